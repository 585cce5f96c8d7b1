// sensor-dashboard live updates. The page is complete without this script; with it, the
// page follows the cluster through Server-Sent Events (GET /events), ages tick, and the
// sensor list is searched and paged in place. Everything from the server is either
// server-escaped HTML (sections, timeline entries) or set with textContent (sensor rows).
(function () {
  'use strict';
  var main = document.getElementById('main');
  if (!main || !window.EventSource) { return; }
  var PER_PAGE = 100;
  var MAX_EVENTS = 200;
  var liveState = document.getElementById('live-state');
  var rowsEl = document.getElementById('sensor-rows');
  var pagerEl = document.getElementById('sensor-pager');
  var countEl = document.getElementById('sensor-count');
  var timelineEl = document.getElementById('timeline');
  var searchForm = document.getElementById('sensor-search');
  var searchInput = document.getElementById('q');
  var lastSeq = Number(main.getAttribute('data-last-seq')) || 0;
  var sensors = new Map();
  var leader = null;
  var query = searchInput ? searchInput.value.trim().toLowerCase() : '';
  var page = 0;
  var haveList = false;

  function ago(ms) {
    var s = Math.max(0, Math.round((Date.now() - ms) / 1000));
    if (s < 60) { return s + ' s ago'; }
    var m = Math.floor(s / 60);
    if (m < 60) { return m + ' min ' + (s % 60) + ' s ago'; }
    var h = Math.floor(m / 60);
    if (h < 48) { return h + ' h ' + (m % 60) + ' min ago'; }
    return Math.floor(h / 24) + ' days ago';
  }

  function tick() {
    var times = document.querySelectorAll('time.age');
    for (var i = 0; i < times.length; i++) {
      var t = times[i];
      var ms = Number(t.getAttribute('data-ms'));
      if (!ms) { continue; }
      if (!t.title) { t.title = t.textContent; }
      t.textContent = ago(ms);
    }
  }

  function setLive(state, text) {
    if (!liveState) { return; }
    liveState.setAttribute('data-state', state);
    liveState.textContent = text;
  }

  function cell(text, cls) {
    var td = document.createElement('td');
    if (cls) { td.className = cls; }
    if (text !== null) { td.textContent = text; }
    return td;
  }

  function row(s) {
    var tr = document.createElement('tr');
    tr.setAttribute('data-sensor', s.id);
    var id = cell(s.id, 'id');
    if (s.id === leader) {
      var b = document.createElement('span');
      b.className = 'badge';
      b.textContent = 'leader';
      id.appendChild(document.createTextNode(' '));
      id.appendChild(b);
    }
    tr.appendChild(id);
    tr.appendChild(cell(s.reading, 'num'));
    var when = cell(null, null);
    if (s.ms > 0) {
      var t = document.createElement('time');
      t.className = 'age';
      t.setAttribute('data-ms', String(s.ms));
      t.title = new Date(s.ms).toISOString().replace('T', ' ').replace(/\.\d+Z$/, ' UTC');
      t.textContent = ago(s.ms);
      when.appendChild(t);
    } else {
      when.textContent = '—';
    }
    tr.appendChild(when);
    var r = document.createElement('span');
    r.className = s.in_round ? 'ok' : 'muted';
    r.textContent = s.in_round ? '✓ read' : 'waiting';
    var rc = cell(null, null);
    rc.appendChild(r);
    tr.appendChild(rc);
    return tr;
  }

  function pagerButton(label, target) {
    var b = document.createElement('button');
    b.type = 'button';
    b.className = 'link';
    b.textContent = label;
    b.addEventListener('click', function () { page = target; drawSensors(); });
    return b;
  }

  function drawSensors() {
    if (!haveList || !rowsEl) { return; }
    var ids = Array.from(sensors.keys()).sort(function (a, b) { return a < b ? -1 : a > b ? 1 : 0; });
    var matching = query ? ids.filter(function (id) { return id.toLowerCase().indexOf(query) >= 0; }) : ids;
    var pages = Math.max(1, Math.ceil(matching.length / PER_PAGE));
    if (page >= pages) { page = pages - 1; }
    var shown = matching.slice(page * PER_PAGE, (page + 1) * PER_PAGE);
    var frag = document.createDocumentFragment();
    shown.forEach(function (id) { frag.appendChild(row(sensors.get(id))); });
    rowsEl.replaceChildren(frag);
    if (countEl) { countEl.textContent = ids.length + ' live'; }
    if (pagerEl) {
      pagerEl.replaceChildren();
      var text = matching.length === 0 ? 'No sensor matches.' :
        'Showing ' + (page * PER_PAGE + 1) + '–' + (page * PER_PAGE + shown.length) + ' of ' + matching.length +
        (query ? ' matching “' + query + '”' : '') + '.';
      pagerEl.appendChild(document.createTextNode(text + ' '));
      if (page > 0) { pagerEl.appendChild(pagerButton('‹ Previous', page - 1)); }
      if (page < pages - 1) { pagerEl.appendChild(pagerButton('Next ›', page + 1)); }
    }
  }

  if (searchForm && searchInput) {
    searchForm.addEventListener('submit', function (e) {
      if (haveList) { e.preventDefault(); }
    });
    searchInput.addEventListener('input', function () {
      query = searchInput.value.trim().toLowerCase();
      page = 0;
      drawSensors();
    });
  }

  var source = new EventSource('/events?since=' + lastSeq);
  source.addEventListener('open', function () { setLive('live', 'live updates'); });
  source.addEventListener('error', function () { setLive('reconnecting', 'connection to the dashboard lost; reconnecting…'); });
  source.addEventListener('section', function (e) {
    var d = JSON.parse(e.data);
    var el = document.getElementById(d.id);
    if (el) { el.innerHTML = d.html; tick(); }
  });
  source.addEventListener('sensors', function (e) {
    var d = JSON.parse(e.data);
    if (d.full) { sensors.clear(); }
    leader = d.leader;
    d.upsert.forEach(function (s) { sensors.set(s.id, s); });
    d.remove.forEach(function (id) { sensors.delete(id); });
    haveList = true;
    drawSensors();
  });
  source.addEventListener('timeline', function (e) {
    var d = JSON.parse(e.data);
    if (!timelineEl || d.seq <= lastSeq) { return; }
    lastSeq = d.seq;
    timelineEl.insertAdjacentHTML('afterbegin', d.html);
    while (timelineEl.children.length > MAX_EVENTS) { timelineEl.removeChild(timelineEl.lastElementChild); }
    var empty = document.getElementById('timeline-empty');
    if (empty) { empty.remove(); }
    tick();
  });
  tick();
  setInterval(tick, 1000);
}());
