fn main() {
    println!("sensor-dashboard: not built yet; see the dashboard issue");
}
