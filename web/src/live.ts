// A server stream that reconnects by itself: after an error or an end of
// stream it waits (exponential backoff with jitter, reset by every message
// received) and opens the stream again, until stopped.

import { Code, ConnectError } from "@connectrpc/connect";
import { describe, type Problem } from "./api";

export type LiveState =
  | { state: "connecting" }
  | { state: "live" }
  | { state: "retrying"; problem: Problem; attempt: number; delayMs: number }
  | { state: "unsupported"; problem: Problem };

export interface LiveOptions<T> {
  // what names the stream in messages ("the live ranking").
  what: string;
  open: (signal: AbortSignal) => AsyncIterable<T>;
  onMessage: (msg: T) => void;
  onState: (s: LiveState) => void;
  // minDelayMs and maxDelayMs bound the backoff (defaults 250 ms, 5 s).
  minDelayMs?: number;
  maxDelayMs?: number;
  // unsupportedRetryMs: how long to wait before asking again a server that
  // answered unimplemented (default 15 s; it may be upgraded meanwhile).
  unsupportedRetryMs?: number;
}

export interface Live {
  stop(): void;
}

// runLive starts the stream and returns a handle to stop it.
export function runLive<T>(o: LiveOptions<T>): Live {
  const min = o.minDelayMs ?? 250;
  const max = o.maxDelayMs ?? 5000;
  const unsupportedRetry = o.unsupportedRetryMs ?? 15000;
  const stopper = new AbortController();
  const loop = async (): Promise<void> => {
    let attempt = 0;
    while (!stopper.signal.aborted) {
      const call = new AbortController();
      const onStop = (): void => call.abort();
      stopper.signal.addEventListener("abort", onStop);
      let problem: Problem | undefined;
      o.onState({ state: "connecting" });
      try {
        let first = true;
        for await (const msg of o.open(call.signal)) {
          if (first) {
            o.onState({ state: "live" });
            first = false;
          }
          attempt = 0;
          o.onMessage(msg);
        }
        // The server ended the stream (for example while shutting down).
        problem = describe(new ConnectError("stream ended", Code.Unavailable), o.what);
      } catch (err) {
        if (stopper.signal.aborted) {
          return;
        }
        problem = describe(err, o.what);
      } finally {
        stopper.signal.removeEventListener("abort", onStop);
        call.abort();
      }
      if (stopper.signal.aborted) {
        return;
      }
      let delay: number;
      if (problem.kind === "unsupported") {
        o.onState({ state: "unsupported", problem });
        delay = unsupportedRetry;
      } else {
        attempt++;
        const base = Math.min(max, min * 2 ** (attempt - 1));
        delay = Math.round(base / 2 + Math.random() * (base / 2));
        o.onState({ state: "retrying", problem, attempt, delayMs: delay });
      }
      await sleep(delay, stopper.signal);
    }
  };
  void loop();
  return { stop: () => stopper.abort() };
}

// sleep resolves after ms, or at once when signal aborts.
export function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal.aborted) {
      resolve();
      return;
    }
    const t = setTimeout(done, ms);
    function done(): void {
      clearTimeout(t);
      signal.removeEventListener("abort", done);
      resolve();
    }
    signal.addEventListener("abort", done);
  });
}
