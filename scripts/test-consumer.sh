#!/usr/bin/env bash
# What a user does on day one: a fresh `nest new` app installs the packed library, adds the module
# and a @Ws echo method, builds with `nest build`, starts, and a client round-trips a message.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d)
app_pid=
cleanup() {
  [ -n "$app_pid" ] && kill "$app_pid" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

cd "$root"
npm run build --silent
tarball=$(npm pack --silent --pack-destination "$work" | tail -n 1)
echo "packed $tarball"

cd "$work"
# without a terminal the CLI asks nothing and takes its defaults
"$root/node_modules/.bin/nest" new consumer --skip-git --package-manager npm --no-observe </dev/null >nest-new.log 2>&1 ||
  { cat nest-new.log; exit 1; }
cd consumer
npm install --no-audit --no-fund --silent "$work/$tarball"

cat >src/echo.controller.ts <<'TS'
import { Controller } from '@nestjs/common';
import { Socket, WebSocketContext, Ws } from 'nestjs-ws-endpoints';

@Controller('socket')
export class EchoController {
  @Ws('handle')
  async handle(@Socket() socket: WebSocketContext) {
    for await (const message of socket) {
      await socket.send(`Your message: ${message.text}`);
    }
  }
}
TS
node - <<'JS'
const fs = require('fs');
const file = 'src/app.module.ts';
let source = fs.readFileSync(file, 'utf8');
const ext = /from '\.\/app\.controller\.js'/.test(source) ? '.js' : '';
source = `import { WsEndpointsModule } from 'nestjs-ws-endpoints';\nimport { EchoController } from './echo.controller${ext}';\n` + source;
source = source.replace(/imports: \[\]/, 'imports: [WsEndpointsModule.forRoot({})]');
source = source.replace(/controllers: \[([^\]]*)\]/, 'controllers: [$1, EchoController]');
fs.writeFileSync(file, source);
JS
npx nest build

port=$(node -e "const s=require('net').createServer().listen(0,'127.0.0.1',()=>{console.log(s.address().port);s.close()})")
PORT=$port node dist/main.js >app.log 2>&1 &
app_pid=$!
node - "$port" <<'JS'
const WebSocket = require('ws');
const port = process.argv[2];
const deadline = Date.now() + 30_000;
(function attempt() {
  const ws = new WebSocket(`ws://127.0.0.1:${port}/socket/handle`);
  ws.on('open', () => ws.send('hello from a fresh app'));
  ws.on('message', (data) => {
    console.log(`round trip: ${data}`);
    process.exit(String(data) === 'Your message: hello from a fresh app' ? 0 : 1);
  });
  ws.on('error', (error) => {
    if (Date.now() > deadline) { console.error(error.message); process.exit(1); }
    setTimeout(attempt, 200); // the app is still starting
  });
})();
JS
status=$?
[ $status -eq 0 ] || cat app.log
exit $status
