import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { ScheduleTable, SlotIndex } from '../src/store/memory/table.js';

describe('SlotIndex (open addressing, backward-shift deletion)', () => {
  it('property: behaves like a Map under random inserts, deletes and lookups', () => {
    const op = fc.oneof(
      fc.record({ kind: fc.constant('put' as const), task: fc.integer({ min: 0, max: 2 }), uid: fc.string({ maxLength: 4 }) }),
      fc.record({ kind: fc.constant('del' as const), task: fc.integer({ min: 0, max: 2 }), uid: fc.string({ maxLength: 4 }) }),
    );
    fc.assert(
      fc.property(fc.array(op, { maxLength: 3000 }), (ops) => {
        const table = new ScheduleTable();
        const index = new SlotIndex(table);
        const model = new Map<string, number>();
        for (const o of ops) {
          const key = `${o.task}\u0000${o.uid}`;
          const found = index.find(o.task, o.uid);
          expect(found).toBe(model.get(key) ?? -1);
          if (o.kind === 'put' && found === -1) {
            const slot = table.alloc();
            table.task[slot] = o.task;
            table.uid[slot] = o.uid;
            index.insert(slot);
            model.set(key, slot);
          } else if (o.kind === 'del' && found !== -1) {
            index.delete(found);
            table.release(found);
            model.delete(key);
          }
        }
        expect(index.size).toBe(model.size);
        for (const [key, slot] of model) {
          const [task, uid] = key.split('\u0000') as [string, string];
          expect(index.find(Number(task), uid)).toBe(slot);
        }
      }),
      { numRuns: 300 },
    );
  });
});
