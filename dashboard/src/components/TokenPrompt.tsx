import { useState } from "react";

/** Shown instead of any data when there is no token or the server refused it (401 / close 4401). */
export function TokenPrompt({ refused, onToken }: { refused: boolean; onToken: (token: string) => void }) {
  const [value, setValue] = useState("");
  return (
    <main className="flex min-h-[70vh] items-center justify-center p-4">
      <form
        data-testid="token-prompt"
        className="w-full max-w-sm rounded-lg border border-edge bg-panel p-4"
        onSubmit={(e) => {
          e.preventDefault();
          if (value.trim() !== "") onToken(value.trim());
        }}
      >
        <h1 className="mb-1 text-lg font-semibold text-white">Dashboard token</h1>
        <p className="mb-3 text-sm text-gray-300">
          {refused
            ? "The coordinator refused this token. Enter the dashboard's read token (XYLEN_DASHBOARD_TOKEN)."
            : "Enter the dashboard's read token (XYLEN_DASHBOARD_TOKEN); `xylen demo` prints a link with it."}
        </p>
        <label htmlFor="token" className="sr-only">Token</label>
        <input
          id="token"
          type="password"
          autoComplete="off"
          autoFocus
          value={value}
          onChange={(e) => setValue(e.target.value)}
          className="mb-3 w-full rounded border border-edge bg-black px-2 py-1 text-gray-100"
        />
        <button type="submit" className="w-full rounded bg-gradient-to-r from-xylen-900 to-xylen-700 px-3 py-1.5 font-semibold text-white">
          Connect
        </button>
      </form>
    </main>
  );
}
