/**
 * Figures from the fault-injection suite (tests/fault-*.test.ts). Each fault test calls
 * recordFault() with what it injected and what it counted; when SCHEDKIT_FAULT_REPORT names
 * a file, one JSON line per record is appended to it, and scripts/reliability.mjs turns
 * those lines into docs/reliability.md. Without the variable nothing is written.
 */
import { appendFileSync } from 'node:fs';

export interface FaultRecord {
  /** Short name of the fault, e.g. "kill -9 of executors". */
  fault: string;
  /** Store and setup, e.g. "RedisStore, 1 redis-server, 4 executors". */
  setup: string;
  /** How many times the fault was injected (kills, restarts, pauses...). */
  injected: number;
  /** Occurrences that were due during the test. */
  occurrences: number;
  /** Occurrences that never ran to success (must be 0 unless the fault's guarantee allows loss). */
  lost: number;
  /** Extra runs of an occurrence beyond the first successful one. */
  duplicates: number;
  /** Duplicates explained by a lease that was really lost (a killed or stalled executor). */
  explainedDuplicates?: number;
  /** Time from the end of the fault until work flowed again, in ms (null: not measured). */
  recoveryMs: number | null;
  /** Anything a reader needs to interpret the row (loss window, errors seen...). */
  notes?: string;
}

export function recordFault(record: FaultRecord): void {
  const file = process.env['SCHEDKIT_FAULT_REPORT'];
  if (file === undefined || file === '') return;
  appendFileSync(file, `${JSON.stringify({ ...record, at: new Date().toISOString() })}\n`);
}
