#!/usr/bin/env bash
# Set everything up, start the embedded Box emulator, drop a few sample files
# into var/demo/inbox and run syncd on it in the foreground (Ctrl-C stops both).
#
#   bash scripts/demo.sh          # run until Ctrl-C; drop more files into var/demo/inbox
#   bash scripts/demo.sh --once   # upload what is there, show the status, exit
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh

MODE=run
if [ "${1:-}" = "--once" ]; then MODE=once; fi
PORT=8765   # config/demo.yaml points at this port
DEMO=var/demo
mkdir -p "$DEMO/inbox/reports/2026" "$DEMO/box"

if ! .venv/bin/python - "$PORT" <<'PY'
import socket, sys
s = socket.socket()
sys.exit(0 if s.connect_ex(("127.0.0.1", int(sys.argv[1]))) != 0 else 1)
PY
then
    echo "demo: port $PORT is in use; is another demo running? (stop it, or edit config/demo.yaml)" >&2
    exit 1
fi

.venv/bin/syncd emulator --host 127.0.0.1 --port "$PORT" --data "$DEMO/box" >"$DEMO/emulator.log" 2>&1 &
EMULATOR=$!
trap 'kill "$EMULATOR" 2>/dev/null || true' EXIT
for _ in $(seq 50); do
    grep -q "listening" "$DEMO/emulator.log" 2>/dev/null && break
    sleep 0.1
done
grep -q "listening" "$DEMO/emulator.log" || { cat "$DEMO/emulator.log" >&2; exit 1; }

# Sample drop: a note, a nested report, and a file big enough for a chunked upload.
[ -f "$DEMO/inbox/hello.txt" ] || echo "hello from syncd $(date -u +%FT%TZ)" > "$DEMO/inbox/hello.txt"
[ -f "$DEMO/inbox/reports/2026/summary.csv" ] || printf 'month,files\njan,42\nfeb,17\n' > "$DEMO/inbox/reports/2026/summary.csv"
[ -f "$DEMO/inbox/scan-big.bin" ] || head -c $((60 * 1024 * 1024)) /dev/urandom > "$DEMO/inbox/scan-big.bin"

cat <<MSG
demo: emulator at http://127.0.0.1:$PORT/2.0 (token dev-token, data in $DEMO/box, log $DEMO/emulator.log)
demo: watching $DEMO/inbox -> Box folder "All Files"
demo: in another terminal:
        cp some-file $DEMO/inbox/                       # ingest a file
        .venv/bin/syncd status -c config/demo.yaml      # what syncd is doing
        curl -s -H 'Authorization: Bearer dev-token' http://127.0.0.1:$PORT/2.0/folders/0/items
MSG

if [ "$MODE" = once ]; then
    .venv/bin/syncd once --config config/demo.yaml
    .venv/bin/syncd status --config config/demo.yaml
else
    .venv/bin/syncd run --config config/demo.yaml
fi
