type Listener<T> = (value: T) => void;

/**
 * Typed events: `on` returns what stops listening. A listener that throws does not stop the
 * others nor the client: its error is reported as an uncaught one, as a DOM event's would be.
 */
export class Emitter<Events> {
  private readonly listeners = new Map<keyof Events, Set<Listener<never>>>();

  on<K extends keyof Events>(
    event: K,
    listener: Listener<Events[K]>,
  ): () => void {
    let set = this.listeners.get(event);
    if (!set) this.listeners.set(event, (set = new Set()));
    set.add(listener);
    return () => void set.delete(listener);
  }

  emit<K extends keyof Events>(event: K, value: Events[K]): void {
    for (const listener of this.listeners.get(event) ?? []) {
      try {
        (listener as Listener<Events[K]>)(value);
      } catch (error) {
        setTimeout(() => {
          throw error;
        });
      }
    }
  }
}
