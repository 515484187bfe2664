import { isRecord } from "./errors.js";

/**
 * A change to a typed table (the guest SDK's `Table<T>`), published as
 * event `table:<name>` on the object's event stream and sent to its
 * sockets: `{"table", "op", "row"}`. A row too large for an event comes
 * as its id and timestamps with `truncated: true`: read it yourself.
 */
export interface Change<Row = Record<string, unknown>> {
  table: string;
  op: "create" | "update" | "delete";
  row: Row & { id: number; created_at: number; updated_at: number };
  truncated?: boolean;
}

/** The change in `value` if it is one of topic `table:<name>`. */
export function changeOf(topic: string, value: unknown): Change | undefined {
  if (!isRecord(value) || typeof value.table !== "string" || typeof value.op !== "string") return undefined;
  if (!isRecord(value.row) || `table:${value.table}` !== topic) return undefined;
  return value as unknown as Change;
}
