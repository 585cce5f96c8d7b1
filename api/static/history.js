// Progressive enhancement: show times in the browser's time zone.
for (const t of document.querySelectorAll("time[data-ms]")) {
  const d = new Date(Number(t.dataset.ms));
  if (!isNaN(d)) { t.title = t.textContent; t.textContent = d.toLocaleString(); }
}
