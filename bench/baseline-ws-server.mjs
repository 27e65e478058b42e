// The baseline for the fleet-scale figures: a bare ws server that parses every frame and keeps
// the last heartbeat time per connection, and nothing else.
import { WebSocketServer } from 'ws';

const wss = new WebSocketServer({ host: '127.0.0.1', port: 0, perMessageDeflate: false });
const last = new Map();
wss.on('listening', () => console.log(`port ${wss.address().port}`));
wss.on('connection', (ws) => {
  ws.on('message', (data) => {
    const msg = JSON.parse(data.toString());
    if (msg.type === 'heartbeat') last.set(ws, Date.now());
  });
});
