"""Lua scripts that make each job state change atomic (status, stream ack and counters together).

Why Lua: a worker can die between any two commands; every transition below either happens
whole or not at all, which is what makes at-least-once delivery safe to combine with
exactly-one stored result. Acked entries are deleted (XDEL) so XLEN is the queue depth and
no acked entry is ever left for XAUTOCLAIM to trip over.
"""
from __future__ import annotations

_ACK_DEL = """
local function ack_del(stream, group, msg_id)
  redis.call('XACK', stream, group, msg_id)
  redis.call('XDEL', stream, msg_id)
end
local function terminal(status)
  return status == 'COMPLETED' or status == 'FAILED' or status == 'CANCELLED'
end
"""

# KEYS: job, stream, stats, dead_letter
# ARGV: group, msg_id, consumer, now, device, job_id
# Returns {state, attempts} and, when the job starts, the job hash (saves a round trip).
START = _ACK_DEL + """
local status = redis.call('HGET', KEYS[1], 'status')
if not status then ack_del(KEYS[2], ARGV[1], ARGV[2]) return {'missing', 0} end
if terminal(status) then ack_del(KEYS[2], ARGV[1], ARGV[2]) return {status, 0} end
local attempts = tonumber(redis.call('HGET', KEYS[1], 'attempts') or '0')
local max_attempts = tonumber(redis.call('HGET', KEYS[1], 'max_attempts') or '3')
if attempts >= max_attempts then
  local err = 'gave up after ' .. attempts .. ' attempts: the last one ended without a result (worker died)'
  local last = redis.call('HGET', KEYS[1], 'error')
  if last and last ~= '' then err = err .. '; earlier error: ' .. last end
  redis.call('HSET', KEYS[1], 'status', 'FAILED', 'error', err, 'finished_at', ARGV[4], 'owner', '')
  redis.call('XADD', KEYS[4], '*', 'job_id', ARGV[6], 'error', err, 'attempts', attempts)
  redis.call('HINCRBY', KEYS[3], 'failed', 1)
  ack_del(KEYS[2], ARGV[1], ARGV[2])
  return {'dead', attempts}
end
redis.call('HSET', KEYS[1], 'status', 'RUNNING', 'owner', ARGV[3], 'worker', ARGV[3],
           'attempts', attempts + 1, 'lease_at', ARGV[4], 'device', ARGV[5])
if (redis.call('HGET', KEYS[1], 'started_at') or '') == '' then
  redis.call('HSET', KEYS[1], 'started_at', ARGV[4])
end
redis.call('HINCRBY', KEYS[3], 'started', 1)
redis.call('PUBLISH', KEYS[1], 'RUNNING')
return {'RUNNING', attempts + 1, redis.call('HGETALL', KEYS[1])}
"""

# KEYS: job, stream
# ARGV: group, msg_id, consumer, now
# Returns {owned (0/1), cancel_requested (0/1)}.
RENEW = """
if redis.call('HGET', KEYS[1], 'owner') ~= ARGV[3] or redis.call('HGET', KEYS[1], 'status') ~= 'RUNNING' then
  return {0, 0}
end
redis.call('XCLAIM', KEYS[2], ARGV[1], ARGV[3], 0, ARGV[2], 'JUSTID')
redis.call('HSET', KEYS[1], 'lease_at', ARGV[4])
return {1, tonumber(redis.call('HGET', KEYS[1], 'cancel_requested') or '0')}
"""

# KEYS: job, stream, history, stats, history_all
# ARGV: job_id, now, then the job hash as field, value, field, value...
# Idempotent: a job id that already exists is left alone (a producer that lost the reply of
# its enqueue may retry with the same id without creating a second job). Returns 1 when created.
ENQUEUE = """
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], unpack(ARGV, 3))
redis.call('XADD', KEYS[2], '*', 'job_id', ARGV[1])
redis.call('ZADD', KEYS[3], ARGV[2], ARGV[1])
redis.call('ZADD', KEYS[5], ARGV[2], ARGV[1])
redis.call('HINCRBY', KEYS[4], 'submitted', 1)
redis.call('PUBLISH', KEYS[1], 'PENDING')
return 1
"""

# Every state change a watcher waits for is also PUBLISHed on the job key's name (see
# ``keys.job``), so WatchBacktest & co. wake at once instead of at their next poll; enqueue
# (PENDING) and start (RUNNING) are announced too, for the WebSocket gateway's task_status.

# KEYS: job, stream, stats, result
# ARGV: group, msg_id, now, final_status ('COMPLETED'|'CANCELLED'), result_json ('' for none), ttl, counter
# The first finisher wins; a late duplicate (reclaimed job) only acks. Returns 1 when written.
FINISH = _ACK_DEL + """
local status = redis.call('HGET', KEYS[1], 'status')
if (not status) or terminal(status) then ack_del(KEYS[2], ARGV[1], ARGV[2]) return 0 end
if ARGV[5] ~= '' then redis.call('SET', KEYS[4], ARGV[5], 'EX', ARGV[6]) end
local progress = '1'
if ARGV[4] ~= 'COMPLETED' then progress = redis.call('HGET', KEYS[1], 'progress') or '0' end
redis.call('HSET', KEYS[1], 'status', ARGV[4], 'progress', progress, 'finished_at', ARGV[3], 'owner', '')
redis.call('EXPIRE', KEYS[1], ARGV[6])
redis.call('HINCRBY', KEYS[3], ARGV[7], 1)
redis.call('PUBLISH', KEYS[1], ARGV[4])
ack_del(KEYS[2], ARGV[1], ARGV[2])
return 1
"""

# KEYS: job, stream, stats, dead_letter, delayed
# ARGV: group, msg_id, now, error, retryable ('1'|'0'), backoff_base_seconds, job_id, ttl
# Returns 'retry', 'failed' or 'ignored'.
FAIL = _ACK_DEL + """
local status = redis.call('HGET', KEYS[1], 'status')
if (not status) or terminal(status) then ack_del(KEYS[2], ARGV[1], ARGV[2]) return 'ignored' end
local attempts = tonumber(redis.call('HGET', KEYS[1], 'attempts') or '0')
local max_attempts = tonumber(redis.call('HGET', KEYS[1], 'max_attempts') or '3')
if ARGV[5] == '1' and attempts < max_attempts then
  local delay = tonumber(ARGV[6]) * (2 ^ math.max(attempts - 1, 0))
  redis.call('HSET', KEYS[1], 'status', 'PENDING', 'error', ARGV[4], 'owner', '', 'progress', '0')
  redis.call('HDEL', KEYS[1], 'progress_detail')
  redis.call('ZADD', KEYS[5], tonumber(ARGV[3]) + delay, ARGV[7])
  redis.call('HINCRBY', KEYS[3], 'retried', 1)
  ack_del(KEYS[2], ARGV[1], ARGV[2])
  return 'retry'
end
redis.call('HSET', KEYS[1], 'status', 'FAILED', 'error', ARGV[4], 'finished_at', ARGV[3], 'owner', '')
redis.call('EXPIRE', KEYS[1], ARGV[8])
redis.call('XADD', KEYS[4], '*', 'job_id', ARGV[7], 'error', ARGV[4], 'attempts', attempts)
redis.call('HINCRBY', KEYS[3], 'failed', 1)
redis.call('PUBLISH', KEYS[1], 'FAILED')
ack_del(KEYS[2], ARGV[1], ARGV[2])
return 'failed'
"""

# KEYS: job, delayed, stats
# ARGV: now, job_id, ttl
# Returns 'cancelled' (it was pending), 'requested' (running: the worker stops at its next
# progress check), the terminal status it already had, or 'missing'.
CANCEL = """
local status = redis.call('HGET', KEYS[1], 'status')
if not status then return 'missing' end
if status == 'PENDING' then
  redis.call('HSET', KEYS[1], 'status', 'CANCELLED', 'finished_at', ARGV[1], 'cancel_requested', '1')
  redis.call('EXPIRE', KEYS[1], ARGV[3])
  redis.call('ZREM', KEYS[2], ARGV[2])
  redis.call('HINCRBY', KEYS[3], 'cancelled', 1)
  redis.call('PUBLISH', KEYS[1], 'CANCELLED')
  return 'cancelled'
end
if status == 'RUNNING' then
  redis.call('HSET', KEYS[1], 'cancel_requested', '1')
  return 'requested'
end
return status
"""

# KEYS: job, old_stream, new_stream
# ARGV: group, msg_id, job_id, consumer, now
# Put a held entry back on the queue (graceful shutdown): the job is PENDING again and the
# attempt it was given here is not counted.
REQUEUE = _ACK_DEL + """
local status = redis.call('HGET', KEYS[1], 'status')
if status == 'RUNNING' and redis.call('HGET', KEYS[1], 'owner') == ARGV[4] then
  local attempts = tonumber(redis.call('HGET', KEYS[1], 'attempts') or '1')
  redis.call('HSET', KEYS[1], 'status', 'PENDING', 'owner', '', 'progress', '0',
             'attempts', math.max(attempts - 1, 0))
  redis.call('HDEL', KEYS[1], 'progress_detail')
  status = 'PENDING'
end
if status == 'PENDING' then
  redis.call('HSET', KEYS[1], 'enqueued_at', ARGV[5])
  redis.call('XADD', KEYS[3], '*', 'job_id', ARGV[3])
end
ack_del(KEYS[2], ARGV[1], ARGV[2])
return status
"""

# KEYS: delayed, job, stream
# ARGV: job_id, now
# Move one due retry back onto its stream; exactly one worker wins the ZREM.
PROMOTE = """
if redis.call('ZREM', KEYS[1], ARGV[1]) == 0 then return 0 end
if redis.call('HGET', KEYS[2], 'status') ~= 'PENDING' then return 0 end
redis.call('HSET', KEYS[2], 'enqueued_at', ARGV[2])
redis.call('XADD', KEYS[3], '*', 'job_id', ARGV[1])
return 1
"""

# KEYS: job
# ARGV: progress (fraction text), has_detail ('1'|'0'), detail JSON
# Store the progress and announce it on the job's channel (one call; a redis-py cluster pipeline
# refuses PUBLISH, a script does not).
PROGRESS = """
if ARGV[2] == '1' then
  redis.call('HSET', KEYS[1], 'progress', ARGV[1], 'progress_detail', ARGV[3])
else
  redis.call('HSET', KEYS[1], 'progress', ARGV[1])
end
redis.call('PUBLISH', KEYS[1], 'progress:' .. ARGV[1])
return 1
"""
