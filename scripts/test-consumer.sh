#!/usr/bin/env bash
# What a user does on day one, from the README itself. Two fresh apps made by the nest CLI, the
# default ESM + vitest and the CJS + jest variant, install the packed library and what the README's
# install line names, receive the files of the README's "Using it in your app" section
# (scripts/readme-files.mjs), build with `nest build`, start (a message round-trips; SIGTERM closes
# the session with 1001), and run the README's e2e spec with their own test runner.
# Needs the npm registry and nothing else.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d)
app_pid=
cleanup() {
  if [ -n "$app_pid" ]; then kill "$app_pid" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

# step <label> <command…>: runs the command with its output in $log, shown only when it fails
steps=0
log=
step() {
  local label=$1 start=$SECONDS
  shift
  steps=$((steps + 1))
  log="$work/step-$steps.log"
  if "$@" >"$log" 2>&1 </dev/null; then
    echo "  ok   $label ($((SECONDS - start)) s)"
  else
    echo "  FAIL $label" >&2
    cat "$log" >&2
    exit 1
  fi
}

cd "$root"
start=$SECONDS
# prepack builds the library first
tarball="$work/$(npm pack --silent --pack-destination "$work" 2>"$work/pack.log" | tail -n 1)" ||
  { cat "$work/pack.log" >&2; exit 1; }
echo "packed $(basename "$tarball") ($((SECONDS - start)) s)"
# the README's install line, with the tarball in place of the package's name
deps=$(sed -n 's/^npm install nestjs-ws-endpoints \(.*\)$/\1/p' README.md | head -n 1)
[ -n "$deps" ] || { echo 'README.md has no "npm install nestjs-ws-endpoints …" line.' >&2; exit 1; }
nest="$root/node_modules/.bin/nest"
# the schematics runner `nest new` itself uses, found from the CLI as the CLI finds it
schematics=$(node -p "require.resolve('@angular-devkit/schematics-cli/bin/schematics.js',
  { paths: [require('path').dirname(require.resolve('@nestjs/cli/package.json'))] })")

# The oldest Node the README promises for a user's app (^20.19 || >= 22.12) runs the ESM app when
# the machine has one (Debian's Node 20 here); jest in the CJS app needs Node >= 24.9, the project's.
project_path=$PATH
system_path=$(echo "$PATH" | tr ':' '\n' | grep -v '/node_modules/' | paste -sd: -)
system_node=$(PATH=$system_path command -v node || true)
if [ -n "$system_node" ] && "$system_node" -e '
  const [major, minor] = process.versions.node.split(".").map(Number);
  process.exit((major === 20 && minor >= 19) || (major === 22 && minor >= 12) || major === 23 || major >= 24 ? 0 : 1)'; then
  esm_path=$system_path
else
  esm_path=$project_path
fi

cat >"$work/probe.cjs" <<'JS'
// Round-trips a message on the README's echo, then sends SIGTERM to the app: the session must
// close with 1001 (the drain of enableShutdownHooks), not 1006.
const WebSocket = require(require.resolve('ws', { paths: [process.cwd()] }));
const [port, pid] = process.argv.slice(2);
const fail = (message) => { console.error(message); process.exit(1); };
const deadline = Date.now() + 30_000;
(function attempt() {
  const ws = new WebSocket(`ws://127.0.0.1:${port}/chat/echo`);
  let replied = false;
  ws.on('open', () => ws.send('hello from a fresh app'));
  ws.on('message', (data) => {
    console.log(`round trip: ${data}`);
    if (!/^Your message: hello from a fresh app at \d{4}-/.test(String(data))) fail('unexpected reply');
    replied = true;
    process.kill(Number(pid), 'SIGTERM');
    setTimeout(() => fail('no close frame within 15 s of SIGTERM'), 15_000).unref();
  });
  ws.on('close', (code, reason) => {
    if (!replied) return;
    console.log(`after SIGTERM: ${code} ${reason}`);
    process.exit(code === 1001 ? 0 : 1);
  });
  ws.on('error', (error) => {
    if (replied) return;
    if (Date.now() > deadline) fail(error.message);
    setTimeout(attempt, 200); // the app is still starting
  });
})();
JS

# check_app <dir> <PATH>: install, write the README's files, build, start, round-trip, test
check_app() {
  local dir=$1
  export PATH=$2
  cd "$work/$dir"
  echo "  on node $(node --version) ($(command -v node))"
  step "npm install <tarball> $deps" npm install --no-audit --no-fund "$tarball" $deps
  step "write the README's files" node "$root/scripts/readme-files.mjs" "$root/README.md" .
  sed 's/^/       /' "$log"
  local specs
  specs=$(sed -n 's/^wrote \(test\/.*e2e-spec\.ts\)$/\1/p' "$log")
  [ -n "$specs" ] || { echo "  FAIL the README has no e2e spec (test/….e2e-spec.ts)" >&2; exit 1; }
  step "nest build" npx nest build
  # the client entry point: the browser ES module to import, the CommonJS build to require
  step "nestjs-ws-endpoints/client by import and by require" node -e "
    const { connect } = require('nestjs-ws-endpoints/client');
    import('nestjs-ws-endpoints/client').then((esm) => {
      if (typeof connect !== 'function' || typeof esm.connect !== 'function') process.exit(1);
    });"
  local port
  port=$(node -e "const s=require('net').createServer().listen(0,'127.0.0.1',()=>{console.log(s.address().port);s.close()})")
  PORT=$port node dist/main.js >"$work/$dir-app.log" 2>&1 &
  app_pid=$!
  if node "$work/probe.cjs" "$port" "$app_pid" >"$work/$dir-probe.log" 2>&1; then
    echo "  ok   node dist/main.js: a round trip, then SIGTERM"
    sed 's/^/       /' "$work/$dir-probe.log"
  else
    echo "  FAIL node dist/main.js: a round trip, then SIGTERM" >&2
    cat "$work/$dir-probe.log" "$work/$dir-app.log" >&2
    exit 1
  fi
  wait "$app_pid" || true # Nest re-raises SIGTERM once the app is closed
  app_pid=
  step "npm run test:e2e" npm run test:e2e
  for spec in $specs; do # the runner ran the README's spec, not only the app's own
    grep -q "$spec" "$log" || { echo "  FAIL npm run test:e2e did not run $spec" >&2; cat "$log" >&2; exit 1; }
  done
  PATH=$project_path
}

cd "$work"
echo "ESM + vitest (nest new's default)"
# without a terminal the CLI asks nothing and takes its defaults: ESM with vitest, npm, no observe
step "nest new consumer-esm" "$nest" new consumer-esm --skip-git --package-manager npm --no-observe
check_app consumer-esm "$esm_path"

cd "$work"
echo "CJS + jest"
# `nest new` offers CJS only at its module-system prompt; this is the schematic it runs, with
# that answer, followed by the install it does
step "nest new consumer-cjs (type cjs)" node "$schematics" @nestjs/schematics:application \
  --name=consumer-cjs --type=cjs --language=ts --package-manager=npm --skip-git --strict
step "npm install" npm --prefix consumer-cjs install --no-audit --no-fund
check_app consumer-cjs "$project_path"
echo "both apps pass ($((SECONDS - start)) s in all)"
