import type { ReactNode } from "react";

/** A titled card; `id` doubles as the test hook (data-testid). */
export function Panel(props: { id: string; title: string; aside?: ReactNode; className?: string; children: ReactNode }) {
  return (
    <section
      data-testid={props.id}
      aria-labelledby={`${props.id}-title`}
      className={`min-w-0 rounded-lg border border-edge bg-panel ${props.className ?? ""}`}
    >
      <header className="flex flex-wrap items-center justify-between gap-2 rounded-t-lg border-b border-edge bg-gradient-to-r from-xylen-900 to-xylen-700 px-3 py-1.5">
        <h2 id={`${props.id}-title`} className="text-sm font-semibold uppercase tracking-wider text-white">
          {props.title}
        </h2>
        {props.aside}
      </header>
      <div className="p-3">{props.children}</div>
    </section>
  );
}

export function Empty(props: { children: ReactNode }) {
  return <p className="py-2 text-sm text-gray-400">{props.children}</p>;
}

/** Table cell classes shared by the tables. */
export const th = "px-2 py-1 text-left text-xs font-semibold uppercase tracking-wide text-gray-300";
export const td = "px-2 py-1 align-top tabular-nums";
