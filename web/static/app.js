// Portcullis console: live updates, countdowns and session replay. No framework; the
// pages work without this file, it only makes them live.
'use strict';

// Countdowns: <time data-countdown="RFC3339">.
function tickCountdowns() {
  const now = Date.now();
  for (const el of document.querySelectorAll('[data-countdown]')) {
    const left = Math.max(0, Date.parse(el.dataset.countdown) - now) / 1000;
    if (left <= 0) { el.textContent = 'ended'; continue; }
    const h = Math.floor(left / 3600), m = Math.floor(left % 3600 / 60), s = Math.floor(left % 60);
    el.textContent = (h ? h + 'h ' + String(m).padStart(2, '0') + 'm' : m + 'm ' + String(s).padStart(2, '0') + 's') + ' left';
  }
}

// Live regions: elements with data-live and an id are re-read from the server when a
// request changes, keeping what the user typed into forms inside them.
async function refreshLive() {
  const regions = document.querySelectorAll('[data-live][id]');
  if (!regions.length) return;
  const res = await fetch(location.href, { credentials: 'same-origin', headers: { 'Accept': 'text/html' } });
  if (!res.ok) return;
  const doc = new DOMParser().parseFromString(await res.text(), 'text/html');
  for (const old of regions) {
    const fresh = doc.getElementById(old.id);
    if (!fresh || same(old, fresh)) continue; // nothing changed: leave the page alone
    const typed = {};
    let focused = null;
    for (const f of old.querySelectorAll('textarea[name], input[name]:not([type=hidden])')) {
      typed[f.name] = f.value;
      if (f === document.activeElement) focused = f.name;
    }
    old.replaceWith(fresh);
    for (const f of fresh.querySelectorAll('textarea[name], input[name]:not([type=hidden])')) {
      if (f.name in typed) f.value = typed[f.name];
      if (f.name === focused) f.focus();
    }
  }
  tickCountdowns();
  document.body.dataset.refreshed = String(Date.now());
}

// same reports whether two versions of a region differ only in their relative times
// ("3m 12s left", "5s ago"), which the page keeps current itself.
function same(a, b) {
  const strip = (el) => {
    const c = el.cloneNode(true);
    for (const t of c.querySelectorAll('time')) t.textContent = '';
    return c.innerHTML;
  };
  return strip(a) === strip(b);
}

let pending = null;
function scheduleRefresh() {
  if (pending) return;
  pending = setTimeout(() => { pending = null; refreshLive().catch(() => {}); }, 50);
}

function listen() {
  const url = document.body.dataset.events;
  if (!url || !document.querySelector('[data-live]') || !window.EventSource) return;
  const es = new EventSource(url);
  es.addEventListener('change', scheduleRefresh);
  // On (re)connecting, read the page once more: a change made between loading it and the
  // stream opening (an approved statement's outcome, a moment after its approval) has no
  // notice left to come.
  es.addEventListener('open', () => { document.body.dataset.live = 'connected'; scheduleRefresh(); });
  // A re-check now and then covers changes whose notice was missed (expiry, a reconnect).
  setInterval(scheduleRefresh, 15000);
}

// Terminal: an exec or attach session's recording, in the terminal player (served from
// /static/player, loaded after this file).
function terminalPlayer() {
  const el = document.getElementById('terminal');
  if (!el || !window.AsciinemaPlayer) return;
  window.AsciinemaPlayer.create(el.dataset.cast, el, { fit: 'width', idleTimeLimit: 2, preload: true, autoPlay: true });
  el.dataset.ready = 'true';
}
window.addEventListener('load', terminalPlayer);

// Replay: reveal a recording's steps at their recorded offsets, at a chosen speed.
function player() {
  const box = document.getElementById('player');
  const list = document.getElementById('recording');
  if (!box || !list) return;
  box.hidden = false;
  const steps = [...list.querySelectorAll('.step')];
  const clock = document.getElementById('clock');
  let shown = steps.length, timer = null, started = 0, base = 0;
  const show = (n) => {
    shown = n;
    steps.forEach((s, i) => { s.hidden = i >= n; s.classList.toggle('current', i === n - 1); });
    const at = n > 0 ? Number(steps[n - 1].dataset.offset) : 0;
    clock.textContent = '+' + (at / 1000).toFixed(3) + 's';
    list.dataset.shown = String(n);
  };
  const stop = () => { clearTimeout(timer); timer = null; document.getElementById('play').textContent = 'Play'; };
  const speed = () => Number(document.getElementById('speed').value) || 1;
  const next = () => {
    if (shown >= steps.length) { stop(); return; }
    show(shown + 1);
    if (shown >= steps.length) { stop(); return; }
    const wait = (Number(steps[shown].dataset.offset) - Number(steps[shown - 1].dataset.offset)) / speed();
    timer = setTimeout(next, Math.min(Math.max(wait, 0), 5000));
  };
  document.getElementById('play').addEventListener('click', (e) => {
    if (timer) { stop(); return; }
    if (shown >= steps.length) show(0);
    e.target.textContent = 'Pause';
    next();
  });
  document.getElementById('step').addEventListener('click', () => { stop(); if (shown < steps.length) show(shown + 1); });
  document.getElementById('reset').addEventListener('click', () => { stop(); show(0); });
  show(0);
}

document.addEventListener('DOMContentLoaded', () => {
  tickCountdowns();
  setInterval(tickCountdowns, 1000);
  listen();
  player();
});
