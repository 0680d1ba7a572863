// A trivial pooled handler for bench/pool.mjs.
export default function noop(run) {
  return run.attempt;
}
