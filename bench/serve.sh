#!/usr/bin/env bash
# Serve taskapi for a benchmark: $WORKERS single-worker hypercorn processes (uvloop) on $PORT,
# as production runs them (one per core, each restartable alone), production settings, rate
# limits on but raised by configuration, no access log (as the peers run). Each process has its
# own SO_REUSEPORT socket on the port (bench/reuseport.py): the kernel balances connections over
# them as nginx's upstream does in production.
# Beside them one arq worker (the outbox's relay and the jobs), as production runs one;
# BENCH_ARQ_WORKER=0 leaves it out.
# Environment: PORT WORKERS DATABASE_URL REDIS_URL (as compare.sh exports them).
set -euo pipefail
cd "$(dirname "$0")/.."
export TASKAPI_ENV=production
# random once per checkout (instance/ is not committed: production refuses committed secrets),
# then fixed, so tokens stay valid across restarts of a benchmark run
secret_file=instance/bench-jwt-secret
[ -s "$secret_file" ] || { mkdir -p instance && .venv/bin/python -c \
  'import secrets; print(secrets.token_urlsafe(48))' > "$secret_file"; }
export TASKAPI_JWT_SECRET_KEY="${TASKAPI_JWT_SECRET_KEY:-$(cat "$secret_file")}"
export TASKAPI_RATELIMIT_DEFAULT="${TASKAPI_RATELIMIT_DEFAULT:-100000000 per day}"
export TASKAPI_RATELIMIT_LOGIN="${TASKAPI_RATELIMIT_LOGIN:-1000000 per minute}"
# the login storm's 100 concurrent logins of one account from one address are all in flight
# (charged to the failed-login budgets) before their passwords are checked
export TASKAPI_RATELIMIT_LOGIN_FAILURES_PER_ADDRESS="${TASKAPI_RATELIMIT_LOGIN_FAILURES_PER_ADDRESS:-1000000 per minute}"
export TASKAPI_RATELIMIT_LOGIN_FAILURES_PER_ACCOUNT="${TASKAPI_RATELIMIT_LOGIN_FAILURES_PER_ACCOUNT:-1000000 per minute}"
export TASKAPI_LOG_LEVEL="${TASKAPI_LOG_LEVEL:-WARNING}"
# the listen backlog production's hypercorn.toml sets (hypercorn's own default is 100: a burst of
# thousands of new connections would overflow it, each dropped SYN retried a second later)
backlog=$(.venv/bin/python -c 'import tomllib; print(tomllib.load(open("taskapi/config/hypercorn.toml", "rb"))["backlog"])')
trap 'kill -TERM $(jobs -p) 2>/dev/null || true; wait' TERM INT
for _ in $(seq "${WORKERS:-2}"); do
  .venv/bin/python bench/reuseport.py 127.0.0.1 "${PORT:?}" -- \
    .venv/bin/hypercorn --worker-class uvloop --workers 1 --bind 'fd://{fd}' \
    --backlog "$backlog" --keep-alive 75 --graceful-timeout 5 asgi:app &
done
if [ "${BENCH_ARQ_WORKER:-1}" != 0 ]; then
  .venv/bin/arq worker.WorkerSettings --custom-log-dict worker.LOG_CONFIG &
fi
wait
