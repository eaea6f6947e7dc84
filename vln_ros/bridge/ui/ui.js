// vln_ros web UI: talks to the bridge's REST API and its WebSocket stream (same origin).
'use strict';

// The page lives at <base>/ui/; the API at <base>/ (a reverse proxy may add a prefix).
const BASE = location.pathname.replace(/\/ui(\/.*)?$/, '');
const PLOT_WINDOW_S = 10;
const $ = (id) => document.getElementById(id);

const state = {
  key: sessionStorage.getItem('vln_api_key') || '',
  task: null,          // id of the task the page follows
  ws: null,
  tasks: new Map(),    // id -> instruction, for the history selector
  estop: null,         // the planner's e-stop: true / false / null (no state received)
  cmd: [],             // [t, linear_x, angular_z]
  cmdSince: 0,
  cmdNow: 0,
  historyTimer: null,
};

// ---------------------------------------------------------------- API helpers

async function api(method, path, body) {
  const headers = {};
  if (state.key) headers.Authorization = `Bearer ${state.key}`;
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  const response = await fetch(BASE + path, {
    method, headers, body: body === undefined ? undefined : JSON.stringify(body),
  });
  const data = await response.json().catch(() => ({}));
  if (!response.ok) {
    const err = data.error || {};
    throw new Error(`${response.status} ${err.code || ''}: ${err.message || response.statusText}`);
  }
  return data;
}

function say(id, text, isError = false) {
  const el = $(id);
  el.textContent = text;
  el.classList.toggle('error', isError);
}

async function guarded(id, work) {
  try {
    return await work();
  } catch (err) {
    say(id, err.message, true);
    return null;
  }
}

// ---------------------------------------------------------------- status

function pill(key, ok, title) {
  // ok: true (green), false (red) or 'warn' (amber).
  const el = document.querySelector(`.pill[data-key="${key}"]`);
  el.classList.toggle('ok', ok === true);
  el.classList.toggle('bad', ok === false);
  el.classList.toggle('warn', ok === 'warn');
  el.title = title || '';
}

async function pollHealth() {
  let health;
  try {
    const response = await fetch(BASE + '/health');
    health = await response.json();
  } catch (err) {
    ['bridge', 'task_node', 'perception_node', 'planner_node', 'model']
      .forEach((k) => pill(k, false, 'bridge unreachable'));
    return;
  }
  pill('bridge', true, health.status);
  pill('task_node', health.ros.task_node);
  // Running but not taking the bridge's frames is normal with a simulator or a real camera.
  const perceiving = health.ros.nodes.some((n) => n.endsWith('perception_node'));
  pill('perception_node', health.ros.perception_node || (perceiving ? 'warn' : false),
    health.ros.perception_node ? 'takes the frames the bridge publishes'
      : perceiving ? 'running; its camera is another topic than the bridge frames'
        : 'no perception node');
  pill('planner_node', health.ros.planner_node);
  pill('model', health.model_server.status === 'healthy', health.model_server.status);
  const active = health.ros.active_task;
  if (active && active !== state.task) follow(active);
  if (!active && state.task) showActive(null);
}

// ---------------------------------------------------------------- tasks

function taskConfig() {
  const config = { enable_visualization: $('visualize').checked };
  const fps = parseFloat($('output-fps').value);
  const threshold = parseFloat($('keyframe-threshold').value);
  if (fps > 0) config.output_fps = fps;
  if (threshold >= 0) config.keyframe_threshold = threshold;
  return config;
}

async function createTask() {
  const instruction = $('instruction').value.trim();
  if (!instruction) return say('task-msg', 'write an instruction first', true);
  const switching = Boolean(state.task);
  const reply = await guarded('task-msg', () => api('POST', '/vln/task/create',
    { instruction, config: taskConfig() }));
  if (!reply) return;
  state.tasks.set(reply.task_id, instruction);
  say('task-msg', `${switching ? 'switched to' : 'created'} ${reply.task_id}`);
  follow(reply.task_id, instruction);
}

async function stopTask() {
  if (!state.task) return say('task-msg', 'no active task', true);
  const id = state.task;
  const reply = await guarded('task-msg', () => api('POST', `/vln/task/${id}/stop`));
  if (reply) say('task-msg', `stopped ${id}`);
  refreshHistory();
}

function showActive(id, instruction) {
  state.task = id;
  const text = instruction || (id && state.tasks.get(id)) || '';
  $('active-task').textContent = !id ? 'no active task' : text ? `${id}: "${text}"` : id;
  $('active-task').classList.toggle('muted', !id);
  $('create').textContent = id ? 'Switch task' : 'Start task';
  $('stop').disabled = !id;
}

function follow(id, instruction) {
  if (!state.tasks.has(id) || instruction) state.tasks.set(id, instruction || '');
  showActive(id, instruction);
  renderTaskSelect(id);
  connectStream(id);
  refreshHistory();
  // /health names the active task by id only: a task created elsewhere (REST, ROS) gets its
  // instruction from the task service.
  if (!state.tasks.get(id)) loadInstruction(id);
}

async function loadInstruction(id) {
  const task = await guarded('task-msg', () => api('GET', `/vln/task/${id}?history_limit=1`));
  if (!task || !task.instruction) return;
  state.tasks.set(id, task.instruction);
  renderTaskSelect($('history-task').value || id);
  if (state.task === id) showActive(id, task.instruction);
}

function connectStream(id) {
  if (state.ws) state.ws.close();
  const scheme = location.protocol === 'https:' ? 'wss' : 'ws';
  const key = state.key ? `&api_key=${encodeURIComponent(state.key)}` : '';
  const ws = new WebSocket(
    `${scheme}://${location.host}${BASE}/vln/stream/${id}?debug_images=true${key}`);
  state.ws = ws;
  ws.onmessage = (event) => { if (state.ws === ws) onStream(JSON.parse(event.data)); };
  ws.onclose = () => {
    // Reconnect while the task is still the one followed (a bridge restart, a network blip).
    if (state.ws === ws && state.task === id) setTimeout(() => {
      if (state.ws === ws && state.task === id) connectStream(id);
    }, 1000);
  };
}

function onStream(item) {
  if (item.type === 'result') {
    showResult(item);
    scheduleHistory();
  } else if (item.type === 'debug_image') {
    const img = $('live');
    img.src = `data:image/jpeg;base64,${item.jpeg}`;
    img.classList.add('shown');
    img.dataset.sequence = item.sequence;
    $('frame-info').textContent = `keyframe ${item.sequence} · ${new Date().toLocaleTimeString()}`;
  } else if (item.type === 'task_state') {
    if (item.status !== 'active' && item.task_id === state.task) {
      showActive(null);
      say('task-msg', `${item.task_id} ${item.status}${item.message ? ': ' + item.message : ''}`);
    }
    scheduleHistory();
  } else if (item.type === 'error') {
    say('task-msg', item.error.message, true);
  }
}

function showResult(r) {
  const action = $('action');
  action.textContent = r.action;
  action.className = `badge ${r.action}`;
  $('environment').textContent = r.environment || r.error || '-';
  $('result-status').textContent = `${r.status} (keyframe ${r.sequence})`;
  $('inference').textContent = `${r.inference_time.toFixed(2)} s`;
  $('waypoints').replaceChildren(...r.waypoints.map((w, i) => row([
    i + 1, w.dx.toFixed(2), w.dy.toFixed(2), w.dtheta.toFixed(2), w.confidence.toFixed(2)])));
}

function row(cells) {
  const tr = document.createElement('tr');
  for (const cell of cells) {
    const td = document.createElement('td');
    td.textContent = cell;  // text only: environment strings come from the model
    tr.appendChild(td);
  }
  return tr;
}

function renderTaskSelect(selected) {
  const select = $('history-task');
  select.replaceChildren(...[...state.tasks].reverse().map(([id, text]) => {
    const option = new Option(`${id} ${text ? '"' + text.slice(0, 40) + '"' : ''}`, id);
    option.selected = id === selected;
    return option;
  }));
}

function scheduleHistory() {
  // Results can come at several Hz: one GET per half second is enough.
  if (state.historyTimer) return;
  state.historyTimer = setTimeout(() => { state.historyTimer = null; refreshHistory(); }, 500);
}

async function refreshHistory() {
  const id = $('history-task').value || state.task;
  if (!id) return;
  const task = await guarded('task-msg', () => api('GET', `/vln/task/${id}?history_limit=20`));
  if (!task) return;
  $('history').replaceChildren(...task.history.slice().reverse().map((r) => row([
    r.sequence, r.action, r.status, r.environment || r.error, r.inference_time.toFixed(2)])));
  $('history').dataset.task = id;
  $('history').dataset.status = task.status;
}

// ---------------------------------------------------------------- e-stop

// The state shown is the planner's (vln/estop_state through GET /vln/estop), whoever set it.
function showEstop(engaged, message) {
  state.estop = engaged;
  const el = $('estop-state');
  el.textContent = engaged === null ? `unknown: ${message || 'no planner state'}`
    : engaged ? 'ENGAGED: the planner holds cmd_vel at zero' : 'released';
  el.title = message || '';
  el.dataset.engaged = String(engaged);
  el.classList.toggle('engaged', engaged === true);
  el.classList.toggle('muted', engaged !== true);
}

async function setEstop(engaged) {
  const reply = await guarded('estop-msg', () => api('POST', '/vln/estop', { engaged }));
  if (!reply) return;
  say('estop-msg', reply.message);
  showEstop(reply.engaged, reply.message);
}

function releaseEstop() {
  if (!window.confirm('Release the e-stop? The planner may drive the robot again at once.')) {
    say('estop-msg', 'release cancelled: the e-stop stays as it is');
    return;
  }
  setEstop(false);
}

async function pollEstop() {
  try {
    const s = await api('GET', '/vln/estop');
    showEstop(s.engaged, s.message);
  } catch (err) {
    showEstop(null, err.message);
  }
}

// ---------------------------------------------------------------- velocity plot

async function pollCmd() {
  try {
    const reply = await api('GET', `/vln/cmd_vel?since=${state.cmdSince}`);
    for (const s of reply.samples) state.cmd.push([s.t, s.linear_x, s.angular_z]);
    if (reply.samples.length) state.cmdSince = reply.samples[reply.samples.length - 1].t;
    state.cmdNow = reply.now;
    state.cmd = state.cmd.filter((s) => s[0] > reply.now - PLOT_WINDOW_S);
    const last = state.cmd[state.cmd.length - 1];
    $('cmd-now').textContent = last ? `now ${last[1].toFixed(2)} m/s, ${last[2].toFixed(2)} rad/s`
      : 'no commands';
  } catch (err) {
    $('cmd-now').textContent = err.message;
  }
  drawPlot();
}

function drawPlot() {
  const canvas = $('plot');
  const ctx = canvas.getContext('2d');
  const w = canvas.width, h = canvas.height, pad = 24;
  const limit = Math.max(1, ...state.cmd.map((s) => Math.max(Math.abs(s[1]), Math.abs(s[2]))));
  const x = (t) => pad + (w - pad - 4) * (1 - (state.cmdNow - t) / PLOT_WINDOW_S);
  const y = (v) => h / 2 - (h / 2 - 8) * v / limit;
  ctx.clearRect(0, 0, w, h);
  ctx.strokeStyle = '#dde1e6';
  ctx.fillStyle = '#6a7480';
  ctx.font = '10px sans-serif';
  for (const v of [-limit, 0, limit]) {
    ctx.beginPath(); ctx.moveTo(pad, y(v)); ctx.lineTo(w, y(v)); ctx.stroke();
    ctx.fillText(v.toFixed(1), 2, y(v) + 3);
  }
  for (const [index, color] of [[1, '#2563eb'], [2, '#e67e22']]) {
    ctx.strokeStyle = color;
    ctx.lineWidth = 1.5;
    ctx.beginPath();
    state.cmd.forEach((s, i) => (i ? ctx.lineTo : ctx.moveTo).call(ctx, x(s[0]), y(s[index])));
    ctx.stroke();
  }
}

// ---------------------------------------------------------------- video source

function showSource(s) {
  const text = s.state === 'idle' ? 'idle' : `${s.state}: ${s.source} · ${s.fps} fps · ` +
    `${s.frames_published} frames published${s.error ? ' · ' + s.error : ''}`;
  say('source-state', text, s.state === 'error');
  $('source-state').dataset.state = s.state;
}

function readFile(file) {
  return new Promise((resolve, reject) => {
    const reader = new FileReader();
    reader.onload = () => resolve(reader.result);  // a data URL, accepted by the bridge
    reader.onerror = () => reject(reader.error);
    reader.readAsDataURL(file);
  });
}

async function startSource() {
  const kind = $('source-kind').value;
  const body = { loop: $('source-loop').checked };
  const fps = parseFloat($('source-fps').value);
  if (fps > 0) body.fps = fps;
  if (kind === 'upload') {
    const file = $('source-file').files[0];
    if (!file) return say('source-state', 'choose a video file', true);
    body.upload = await readFile(file);
    body.filename = file.name;
  } else {
    body[kind] = $('source-text').value.trim();
  }
  say('source-state', 'opening...');
  const reply = await guarded('source-state', () => api('POST', '/vln/source', body));
  if (reply) showSource(reply);
}

async function sourceAction(action) {
  const reply = await guarded('source-state', () => api('POST', `/vln/source/${action}`));
  if (reply) showSource(reply);
}

async function pollSource() {
  try { showSource(await api('GET', '/vln/source')); } catch (err) { /* shown on actions */ }
}

function onSourceKind() {
  const kind = $('source-kind').value;
  $('source-file').hidden = kind !== 'upload';
  $('source-text').hidden = kind === 'upload';
  $('source-text').placeholder = kind === 'url' ? 'https://camera/stream.mjpg (needs network)'
    : 'clip.mp4 (under media_dir)';
}

// ---------------------------------------------------------------- wiring

function every(ms, fn) { fn(); setInterval(fn, ms); }

function init() {
  $('api-key').value = state.key;
  $('api-key').addEventListener('change', (e) => {
    state.key = e.target.value.trim();
    sessionStorage.setItem('vln_api_key', state.key);
    if (state.task) connectStream(state.task);
  });
  $('create').addEventListener('click', createTask);
  $('stop').addEventListener('click', stopTask);
  $('estop-engage').addEventListener('click', () => setEstop(true));
  $('estop-release').addEventListener('click', releaseEstop);
  $('history-task').addEventListener('change', refreshHistory);
  $('source-kind').addEventListener('change', onSourceKind);
  $('source-start').addEventListener('click', startSource);
  for (const action of ['pause', 'resume', 'stop']) {
    $(`source-${action}`).addEventListener('click', () => sourceAction(action));
  }
  $('stop').disabled = true;
  onSourceKind();
  every(1000, pollEstop);
  every(2000, pollHealth);
  every(250, pollCmd);
  every(1000, pollSource);
}

init();
