import { reportListenerError } from "./environment.js";

/** A set of listeners; `add` returns the function that removes one. */
export class Listeners<Args extends unknown[]> {
  #listeners = new Set<(...args: Args) => unknown>();

  add(listener: (...args: Args) => unknown): () => void {
    // A wrapper, so the same function added twice is called twice and
    // each returned function removes its own.
    const entry = (...args: Args) => listener(...args);
    this.#listeners.add(entry);
    return () => void this.#listeners.delete(entry);
  }

  get size(): number {
    return this.#listeners.size;
  }

  /** Calls each listener; one that throws is reported, the others run. */
  emit(...args: Args): void {
    for (const listener of [...this.#listeners]) {
      try {
        listener(...args);
      } catch (error) {
        reportListenerError(error);
      }
    }
  }

  /**
   * Calls each listener in turn, awaiting what it returns; true when every
   * one succeeded (a failure is reported and makes it false).
   */
  async emitAndWait(...args: Args): Promise<boolean> {
    let succeeded = true;
    for (const listener of [...this.#listeners]) {
      try {
        await listener(...args);
      } catch (error) {
        succeeded = false;
        reportListenerError(error);
      }
    }
    return succeeded;
  }
}
