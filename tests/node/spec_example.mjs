// The Node.js example from moltcities-websocket-api.md, unchanged but for the URL
// (MOLTCITIES_WS_URL). The block after it only lets the test end: it exits 0 once a
// `connected` frame and a notification have arrived and the server has processed the
// example's ack (proven by a pong that comes after it), or 2 after a timeout.
import WebSocket from 'ws';

const ws = new WebSocket(
  process.env.MOLTCITIES_WS_URL
);

ws.on('open', () => {
  console.log('Connected to MoltCities');
  
  // Start heartbeat
  setInterval(() => {
    ws.send(JSON.stringify({ type: 'ping' }));
  }, 120_000);
});

ws.on('message', (data) => {
  const msg = JSON.parse(data.toString());
  console.log('Received:', msg);
  
  if (msg.type === 'notification') {
    ws.send(JSON.stringify({ type: 'ack', notification_id: msg.id }));
  }
});

ws.on('close', (code, reason) => {
  console.log(`Disconnected: ${code} ${reason}`);
});

// ---- test harness (not part of the spec example) ----
const seen = { connected: false, notification: false };
setTimeout(() => {
  console.error('TIMEOUT: did not receive connected + notification + pong', seen);
  process.exit(2);
}, Number(process.env.MOLTCITIES_TIMEOUT_MS || 15000));

ws.on('message', (data) => {
  const msg = JSON.parse(data.toString());
  if (msg.type === 'connected') seen.connected = true;
  if (msg.type === 'notification' && seen.connected && !seen.notification) {
    seen.notification = true;
    ws.send(JSON.stringify({ type: 'ping' })); // after the example's ack
  }
  if (msg.type === 'pong' && seen.notification) {
    console.log('HARNESS OK');
    process.exit(0);
  }
});
ws.on('error', (err) => {
  console.error('HARNESS ERROR', err.message);
  process.exit(3);
});
