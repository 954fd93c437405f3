// Small DOM helpers. Text from the API or the person (item ids, user ids,
// messages) only ever goes through textContent, never innerHTML.

export function byId<T extends HTMLElement>(id: string): T {
  const el = document.getElementById(id);
  if (el === null) {
    throw new Error(`page element #${id} is missing`);
  }
  return el as T;
}

export function el<K extends keyof HTMLElementTagNameMap>(tag: K, className?: string, text?: string): HTMLElementTagNameMap[K] {
  const e = document.createElement(tag);
  if (className !== undefined) {
    e.className = className;
  }
  if (text !== undefined) {
    e.textContent = text;
  }
  return e;
}

export function setText(e: HTMLElement, text: string): void {
  if (e.textContent !== text) {
    e.textContent = text;
  }
}

// formatCount renders an int64 count.
export function formatCount(n: bigint): string {
  return n.toLocaleString("en-US");
}
