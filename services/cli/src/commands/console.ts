/**
 * `hyperfleet vm console NAME`: the VM's serial console, as `virsh console` gives it. The history
 * the node kept comes first, then live output; what is typed goes to the guest (on a terminal, in
 * raw mode, so Ctrl-C reaches the guest too). Ctrl-] (0x1d) detaches. When stdin is not a terminal
 * its end ends the input, and the command ends when the server ends the console.
 */
import { CONSOLE_INPUT_BYTES_MAX } from "@hyperfleet/api";
import { printJson } from "../output.js";
import type { Cluster, CommonOptions } from "./connection.js";

export type ConsoleOptions = CommonOptions;

/** Ctrl-]: detaches, as in telnet and virsh. */
export const DETACH_BYTE = 0x1d;

/** Runs `vm console`; returns the exit status. */
export async function attachConsole(cluster: Cluster, name: string, options: ConsoleOptions): Promise<number> {
  // A plain call first: NOT_FOUND comes back as such, and an address that answers is chosen.
  await cluster.call((c, o) => c.getVm({ name }, o));
  const connection = cluster.client.attachConsole(name);
  const stdin = process.stdin;
  const raw = stdin.isTTY === true && options.json !== true;
  const history: Uint8Array[] = [];
  const live: Uint8Array[] = [];
  let detached = false;
  let inputEnded = false;

  const detach = (): void => {
    detached = true;
    connection.cancel();
  };
  const onData = (chunk: Buffer): void => {
    if (detached) return;
    const at = chunk.indexOf(DETACH_BYTE);
    const typed = at === -1 ? chunk : chunk.subarray(0, at);
    let wantsMore = true;
    // Bounded: one write per CONSOLE_INPUT_BYTES_MAX bytes of the chunk.
    for (let offset = 0; offset < typed.length; offset += CONSOLE_INPUT_BYTES_MAX) {
      wantsMore = connection.write(typed.subarray(offset, offset + CONSOLE_INPUT_BYTES_MAX)) && wantsMore;
    }
    if (at !== -1) detach();
    // The console asks us to wait: read no more input until output moves.
    else if (!wantsMore) stdin.pause();
  };
  const onEnd = (): void => {
    inputEnded = true;
    if (!detached) connection.end();
  };
  const onSigint = (): void => detach();

  if (raw) {
    stdin.setRawMode(true);
    process.stderr.write(`hyperfleet: connected to the console of ${name}; Ctrl-] detaches\n`);
  }
  stdin.on("data", onData);
  stdin.on("end", onEnd);
  process.on("SIGINT", onSigint);
  try {
    for await (const out of connection.output) {
      if (options.json) (out.history ? history : live).push(out.data);
      else process.stdout.write(out.data);
      if (!inputEnded && !detached && stdin.isPaused()) stdin.resume();
    }
  } finally {
    process.off("SIGINT", onSigint);
    stdin.off("data", onData);
    stdin.off("end", onEnd);
    if (raw) stdin.setRawMode(false);
    stdin.pause();
  }
  if (raw) process.stderr.write(`\nhyperfleet: ${detached ? "detached from" : "the server closed"} the console of ${name}\n`);
  if (options.json) {
    const text = (chunks: Uint8Array[]): string => Buffer.concat(chunks).toString("utf8");
    printJson({ vm: name, history: text(history), output: text(live), detached });
  }
  return 0;
}
