// The demo app of `hualu up --dev`, on the browser SDK alone: sign in by name, a contact list with presence,
// incoming and outgoing call screens, and an in-call screen with a tile per participant. It is also the
// reference for an app team's own client: every SDK call it makes is one an IM app makes.
//
// URL parameters (for links and tests): ?user=NAME signs in at once, &device=ID (default web),
// &contacts=a,b sets the contact list, &relay=1 forces TURN relay, &small=1 captures 320x240 at 15 fps.

import { HualuClient, devToken } from '/sdk/hualu.js';

const $ = (sel) => document.querySelector(sel);
const params = new URLSearchParams(location.search);
const CONTACTS_KEY = 'hualu.contacts';
const REASONS = {
  hangup: 'Call ended', cancelled: 'Call cancelled', declined: 'Declined', busy: 'Busy', no_answer: 'No answer',
  connection_lost: 'Connection lost', no_capacity: 'No server free, try again', answered_elsewhere: 'Answered on another device', ignored: 'Ignored',
  error: 'Call failed',
};

const app = { client: null, call: null, contacts: [] };
window.hualuApp = app;

function show(screen) { document.body.dataset.screen = screen; }

function status(text) { $('#status').textContent = text || ''; }

function avatar(el, name) { el.textContent = (name || '?').slice(0, 1); }

// --- sign in ---------------------------------------------------------------------------------------------

async function signIn(user, device) {
  $('#signin-error').hidden = true;
  $('#signin-btn').disabled = true;
  try {
    const token = await devToken(user, device);
    const small = params.get('small') === '1';
    const opts = { token, rtcConfig: params.get('relay') === '1' ? { iceTransportPolicy: 'relay' } : {} };
    if (small) opts.media = { audio: true, video: { width: 320, height: 240, frameRate: 15 } };
    const client = new HualuClient(opts);
    await client.connect();
    app.client = client;
    client.on('incoming', ({ call }) => onIncoming(call));
    client.on('presence', ({ user: u }) => renderContact(u));
    client.on('reconnecting', () => status('Reconnecting…'));
    client.on('reconnected', () => status(''));
    client.on('disconnected', ({ reason }) => { status(`Disconnected: ${reason}`); show('signin'); });
    $('#me').textContent = `${client.user} · ${client.device}`;
    const given = params.get('contacts');
    setContacts(given !== null ? given.split(',').filter(Boolean) : loadContacts());
    show('contacts');
  } catch (err) {
    $('#signin-error').textContent = String(err.message || err);
    $('#signin-error').hidden = false;
  } finally {
    $('#signin-btn').disabled = false;
  }
}

// --- contacts --------------------------------------------------------------------------------------------

function loadContacts() {
  try { return JSON.parse(localStorage.getItem(CONTACTS_KEY) || '[]').filter((x) => typeof x === 'string'); }
  catch { return []; }
}

function setContacts(list) {
  app.contacts = [...new Set(list.map((x) => x.trim()).filter((x) => x && x !== app.client.user))];
  try { localStorage.setItem(CONTACTS_KEY, JSON.stringify(app.contacts)); } catch { /* private mode */ }
  $('#contact-list').replaceChildren(...app.contacts.map(contactItem));
  app.client.watch(app.contacts).then(() => app.contacts.forEach(renderContact)).catch((err) => {
    status(`Presence unavailable: ${err.message}`);
  });
}

function contactItem(user) {
  const li = document.createElement('li');
  li.dataset.user = user;
  const dot = document.createElement('span');
  dot.className = 'presence';
  dot.dataset.online = 'false';
  const who = document.createElement('span');
  who.className = 'who';
  who.textContent = user;
  const audio = document.createElement('button');
  audio.className = 'call-audio';
  audio.textContent = 'Call';
  audio.onclick = () => placeCall([user], false);
  const video = document.createElement('button');
  video.className = 'call-video';
  video.textContent = 'Video';
  video.onclick = () => placeCall([user], true);
  li.append(dot, who, audio, video);
  return li;
}

function renderContact(user) {
  const li = document.querySelector(`#contact-list li[data-user="${CSS.escape(user)}"]`);
  if (!li) return;
  const devices = app.client.presence.get(user) || [];
  const dot = li.querySelector('.presence');
  dot.dataset.online = String(devices.length > 0);
  dot.title = devices.length ? `online on ${devices.join(', ')}` : 'offline';
}

// --- placing and answering -------------------------------------------------------------------------------

async function placeCall(users, video) {
  if (app.call) return;
  $('#outgoing-to').textContent = users.join(', ');
  avatar($('#outgoing-avatar'), users[0]);
  $('#outgoing-status').textContent = video ? 'Video call…' : 'Calling…';
  show('outgoing');
  try {
    const call = await app.client.call(users, { video });
    track(call);
    call.on('ringing', () => { $('#outgoing-status').textContent = 'Ringing…'; });
    call.on('accepted', () => enterCall());
    call.on('declined', ({ user }) => note(`${user} declined`));
    call.on('busy', ({ user }) => note(`${user} is busy`));
    call.on('missed', ({ user }) => note(`${user} did not answer`));
  } catch (err) {
    show('contacts');
    $('#last-call').textContent = `Could not call: ${err.message}`;
  }
}

function note(text) {
  $('#outgoing-status').textContent = text;
  $('#call-note').textContent = text;
}

function onIncoming(call) {
  if (app.call) return; // one call at a time here: call waiting is off, so this only races a hang-up
  track(call);
  $('#incoming-from').textContent = `${call.from} is calling`;
  $('#incoming-kind').textContent = call.members.length > 2 ? `group call with ${call.members.join(', ')}`
    : call.video ? 'video call' : 'voice call';
  avatar($('#incoming-avatar'), call.from);
  show('incoming');
}

// Follows `call` until it ends: tiles, speakers, quality, reconnects.
function track(call) {
  app.call = call;
  $('#tiles').replaceChildren();
  $('#call-note').textContent = '';
  call.on('participant', ({ participant }) => renderTile(participant));
  call.on('participant_left', ({ participant }) => tileOf(participant.id)?.remove());
  call.on('speakers', ({ speakers }) => {
    const loud = new Set(speakers.filter((s) => s.level > 0).map((s) => s.participant.id));
    for (const t of document.querySelectorAll('.tile')) t.classList.toggle('speaking', loud.has(t.dataset.id));
  });
  call.on('quality', ({ participants }) => participants.forEach(renderQuality));
  call.on('state', ({ state }) => { if (state === 'active') showSelf(call); });
  call.on('reconnecting', () => status('Reconnecting…'));
  call.on('reconnected', ({ ms }) => status(`Reconnected in ${ms} ms`));
  call.on('peer_reconnecting', ({ user }) => { $('#call-note').textContent = `${user} is reconnecting…`; });
  call.on('peer_reconnected', () => { $('#call-note').textContent = ''; });
  call.on('invited', ({ user }) => { $('#call-note').textContent = `${user} was invited`; });
  call.on('left', ({ user }) => { $('#call-note').textContent = `${user} left`; });
  call.on('ended', ({ reason, message }) => {
    if (app.call !== call) return;
    app.call = null;
    $('#self').srcObject = null;
    $('#last-call').textContent = `${REASONS[reason] || reason}${message ? `: ${message}` : ''}`;
    status('');
    show(app.client.state === 'closed' ? 'signin' : 'contacts');
  });
}

function enterCall() {
  const call = app.call;
  if (!call) return;
  $('#mute').setAttribute('aria-pressed', 'false');
  $('#mute').textContent = 'Mute';
  $('#camera').textContent = call.video ? 'Camera off' : 'Camera on';
  $('#camera').setAttribute('aria-pressed', String(!call.video));
  show('incall');
}

function showSelf(call) {
  const self = $('#self');
  self.hidden = !call.cameraOn;
  if (call.localStream && self.srcObject !== call.localStream) self.srcObject = call.localStream;
}

// --- tiles -----------------------------------------------------------------------------------------------

function tileOf(id) { return document.querySelector(`.tile[data-id="${CSS.escape(id)}"]`); }

function renderTile(p) {
  let tile = tileOf(p.id);
  if (!tile) {
    tile = document.createElement('div');
    tile.className = 'tile no-video';
    tile.dataset.id = p.id;
    const video = document.createElement('video');
    video.autoplay = true;
    video.playsInline = true;
    const face = document.createElement('div');
    face.className = 'avatar big';
    const label = document.createElement('div');
    label.className = 'label';
    const quality = document.createElement('div');
    quality.className = 'quality';
    quality.textContent = 'measuring…';
    tile.append(video, face, label, quality);
    $('#tiles').append(tile);
  }
  tile.dataset.identity = p.identity;
  avatar(tile.querySelector('.avatar'), p.identity);
  const label = tile.querySelector('.label');
  label.textContent = p.identity;
  if (p.audioMuted) {
    const m = document.createElement('span');
    m.className = 'muted';
    m.textContent = 'muted';
    label.append(m);
  }
  const video = tile.querySelector('video');
  if (video.srcObject !== p.stream) video.srcObject = p.stream;
  const hasVideo = p.stream.getVideoTracks().length > 0 && !p.videoMuted;
  tile.classList.toggle('no-video', !hasVideo);
  video.play().catch(() => { /* autoplay waits for a gesture on some browsers */ });
}

function renderQuality(p) {
  const el = tileOf(p.id)?.querySelector('.quality');
  if (!el || !p.quality) return;
  const q = p.quality;
  const rtt = q.rttMs === null ? '' : ` · ${Math.round(q.rttMs)} ms RTT`;
  el.textContent = `MOS ${q.mos.toFixed(1)} · ${q.lossPct.toFixed(1)}% loss · ${Math.round(q.jitterMs)} ms jitter${rtt}`;
  el.className = `quality ${q.level}`;
  el.title = `E-model R ${q.r.toFixed(0)} (G.107.1 wideband, Opus), mouth-to-ear estimate ${Math.round(q.delayMs)} ms`;
}

// --- controls --------------------------------------------------------------------------------------------

async function guarded(fn) {
  try { await fn(); } catch (err) { $('#call-note').textContent = String(err.message || err); }
}

function wire() {
  $('#signin-form').addEventListener('submit', (e) => {
    e.preventDefault();
    signIn($('#name').value.trim(), $('#device').value.trim() || 'web');
  });
  $('#contact-form').addEventListener('submit', (e) => {
    e.preventDefault();
    setContacts([...app.contacts, $('#contact-name').value]);
    $('#contact-name').value = '';
  });
  $('#accept').onclick = () => guarded(async () => { await app.call.accept(); enterCall(); });
  $('#decline').onclick = () => guarded(() => app.call.decline());
  $('#ignore').onclick = () => guarded(() => app.call.ignore());
  $('#cancel').onclick = () => guarded(() => app.call.hangup());
  $('#hangup').onclick = () => guarded(() => app.call.hangup());
  $('#mute').onclick = () => guarded(async () => {
    const muted = !app.call.audioMuted;
    await app.call.setMuted(muted);
    $('#mute').textContent = muted ? 'Unmute' : 'Mute';
    $('#mute').setAttribute('aria-pressed', String(muted));
  });
  $('#camera').onclick = () => guarded(async () => {
    const on = !app.call.cameraOn;
    await app.call.setCamera(on);
    $('#camera').textContent = on ? 'Camera off' : 'Camera on';
    $('#camera').setAttribute('aria-pressed', String(!on));
    showSelf(app.call);
  });
  $('#add-form').addEventListener('submit', (e) => {
    e.preventDefault();
    const user = $('#add-user').value.trim();
    guarded(async () => {
      await app.call.invite([user]);
      $('#add-user').value = '';
      $('#call-note').textContent = `Ringing ${user}…`;
    });
  });
}

wire();
if (params.get('user')) {
  $('#name').value = params.get('user');
  $('#device').value = params.get('device') || 'web';
  signIn(params.get('user'), params.get('device') || 'web');
}
