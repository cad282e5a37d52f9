"""Worker processes that own the task instances of a batched environment.

Host only: never imports jax. Environments whose engine is slow or not
thread-safe (a JVM, a PDDL planner) run it in `num_workers` processes
(multiprocessing 'spawn': JAX in the parent is not fork-safe). Instance i of
a batch lives on worker i % num_workers. Each worker builds one server object
from `server_factory(*args)` and runs its methods by name: the parent sends
one (command, (requests,)) message per worker per call and the workers answer
in parallel. `close()` (also run at garbage collection and interpreter exit)
stops them; a worker whose parent dies exits on the closed pipe.

A worker that dies (killed, out of memory, a crash in native code) raises
`WorkerExited`. `call(..., recover=...)` instead starts a fresh worker in its
place, lets the environment restore that worker's instances (`recover(w)`,
e.g. by replaying their actions) and sends the lost request again, so a long
run survives it.
"""

from __future__ import annotations

import multiprocessing as mp
import traceback
import weakref
from collections.abc import Callable

_MAX_RESTARTS = 3           # fresh workers tried in a row for one request


class WorkerExited(RuntimeError):
  """A worker process died."""


def _error(e: Exception) -> tuple:
  return ('error', (type(e).__name__, str(e), traceback.format_exc()))


def _serve(conn, server_factory: Callable, args: tuple) -> None:
  """Worker main loop: (command, args) in, ('ok', result) or ('error', ...) out."""
  try:
    server = server_factory(*args)
  except Exception as e:                       # noqa: BLE001 (sent to parent)
    conn.send(_error(e))
    return
  conn.send(('ok', None))
  try:
    while True:
      try:
        command, command_args = conn.recv()
      except EOFError:                         # the parent is gone
        break
      if command == 'close':
        break
      try:
        conn.send(('ok', getattr(server, command)(*command_args)))
      except Exception as e:                   # noqa: BLE001 (sent to parent)
        conn.send(_error(e))
  finally:
    getattr(server, 'close', lambda: None)()


def _ask_to_close(conn) -> None:
  try:
    conn.send(('close', ()))
  except (OSError, ValueError):                # already closed
    pass


def _join(proc, conn) -> None:
  """Waits for a worker asked to close; terminates it if it hangs."""
  proc.join(timeout=10)
  if proc.is_alive():
    proc.terminate()
    proc.join(timeout=5)
  conn.close()


def _shutdown(procs, conns) -> None:
  """Stops the workers (idempotent; run by close(), GC and atexit)."""
  for conn in conns:
    _ask_to_close(conn)
  for proc, conn in zip(procs, conns):
    _join(proc, conn)


class WorkerPool:
  """`num_workers` processes, each serving `server_factory(*args)`.

  Args:
    label: names the workers in errors ('twx worker 1 exited ...').
    server_factory: a picklable callable building the server in the worker.
    args: its picklable arguments.
    num_workers: processes to start.
    start_timeout_s: how long a worker may take to build its server.
  Raises:
    ValueError: the server's constructor raised ValueError (bad parameters).
    RuntimeError: a worker did not start in time or failed otherwise.
  """

  def __init__(self, label: str, server_factory: Callable, args: tuple,
               num_workers: int, start_timeout_s: float):
    self._label = label
    self._target = (server_factory, args)
    self._timeout = start_timeout_s
    self._ctx = mp.get_context('spawn')
    self.procs: list = []
    self._conns: list = []
    self._finalizer = weakref.finalize(self, _shutdown, self.procs, self._conns)
    try:
      for _ in range(num_workers):
        self._spawn()
      for w in range(num_workers):
        self._wait_ready(w)
    except (RuntimeError, ValueError):
      self.close()
      raise

  @property
  def num_workers(self) -> int:
    return len(self._conns)

  def _spawn(self, w: int | None = None) -> None:
    """Starts a worker (in slot `w`, replacing the one there, or appended)."""
    parent, child = self._ctx.Pipe()
    proc = self._ctx.Process(target=_serve, args=(child, *self._target),
                             daemon=True)
    proc.start()
    child.close()
    if w is None:
      self.procs.append(proc)
      self._conns.append(parent)
    else:
      self.procs[w], self._conns[w] = proc, parent

  def _wait_ready(self, w: int) -> None:
    if not self._conns[w].poll(self._timeout):
      raise RuntimeError(f'{self._label} worker {w} did not start within '
                         f'{self._timeout:.0f} s.')
    self._receive(w)

  def restart(self, w: int) -> None:
    """Replaces worker `w` (dead or alive) with a fresh one."""
    self.procs[w].kill()
    _join(self.procs[w], self._conns[w])
    self._spawn(w)
    self._wait_ready(w)

  def ask(self, w: int, command: str, args: tuple):
    """Runs `command(*args)` on worker `w`; returns its result."""
    self._send(w, command, args)
    return self._receive(w)

  def call(self, command: str, requests: list[tuple[int, object]],
           recover: Callable[[int], None] | None = None) -> list:
    """Runs (instance, request) pairs on the instances' workers, in parallel.

    Each worker gets `command(batch)`, its requests in order, and answers
    one result per request. Returns the results in the order of `requests`.
    With `recover`, a worker found dead is restarted, `recover(w)` restores
    its state, and its batch is sent again; without it, WorkerExited.
    """
    n = self.num_workers
    by_worker = [[] for _ in range(n)]
    for i, request in requests:
      by_worker[i % n].append(request)
    busy = [w for w, batch in enumerate(by_worker) if batch]
    dead = set()
    for w in busy:
      try:
        self._send(w, command, (by_worker[w],))
      except WorkerExited:
        dead.add(w)
    replies, error = {}, None
    for w in busy:                   # drain every pipe before raising
      try:
        if w in dead:
          raise WorkerExited(f'{self._label} worker {w} is gone.')
        replies[w] = self._receive(w)
      except WorkerExited as e:
        if recover is None:
          error = error or e
        else:
          replies[w] = self._retry(w, command, by_worker[w], recover)
      except (RuntimeError, ValueError) as e:
        error = error or e
    if error is not None:
      raise error
    answers = {w: iter(r) for w, r in replies.items()}
    return [next(answers[i % n]) for i, _ in requests]

  def _retry(self, w: int, command: str, batch: list,
             recover: Callable[[int], None]) -> list:
    """Restarts worker `w`, restores it and sends `batch` again."""
    for _ in range(_MAX_RESTARTS):
      self.restart(w)
      try:
        recover(w)
        return self.ask(w, command, (batch,))
      except WorkerExited:
        continue
    raise RuntimeError(f'{self._label} worker {w} died {_MAX_RESTARTS} times '
                       'in a row.')

  def close(self) -> None:
    """Stops every worker (idempotent)."""
    self._finalizer()

  def _send(self, w: int, command: str, args: tuple) -> None:
    if not self._finalizer.alive:
      raise RuntimeError('the environment is closed.')
    try:
      self._conns[w].send((command, args))
    except OSError as e:
      raise WorkerExited(f'{self._label} worker {w} is gone '
                         f'(exit code {self.procs[w].exitcode}).') from e

  def _receive(self, w: int):
    try:
      status, payload = self._conns[w].recv()
    except (EOFError, OSError) as e:           # OSError: reset by a kill
      raise WorkerExited(f'{self._label} worker {w} exited '
                         f'(exit code {self.procs[w].exitcode}).') from e
    if status == 'ok':
      return payload
    kind, message, tb = payload
    if kind == 'ValueError':                   # bad input, e.g. parameters
      raise ValueError(message)
    raise RuntimeError(f'{self._label} worker {w} failed:\n{tb}')
