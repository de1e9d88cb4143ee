/**
 * Golden scenarios: each `testdata/*.txt` file is a list of commands, each followed by `----` and the
 * trace it produces (decisions of the members, messages delivered or dropped, entries applied, read
 * states). The test replays the commands and compares the rendered file with the stored one; run
 * vitest with `-u` to rewrite the files after a deliberate change, and review the diff.
 *
 * Commands (member ids are names like n1):
 *   cluster n1 n2 n3 [prevote=false] [checkquorum=false] [maxsize=N] [maxinflight=N]
 *   add-node n4                  a member joining later: fresh storage, empty membership
 *   campaign n1 | propose n1 text | transfer n1 n2 | read-index n1 context
 *   add-learner n1 n4 | promote n1 n4 | remove n1 n3      conf changes proposed through n1
 *   tick n1 [n2 ...] count       ticks without delivering anything
 *   run n1 [n2 ...] count        ticks the members together count times, delivering everything after each tick
 *   deliver                      delivers messages and processes Readies until nothing moves
 *   isolate n3 | recover | compact n1 | status n1 | log n1
 */
import { readdirSync, readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import { newBootstrapStorage } from "../src/memory-storage.js";
import type { RawNodeConfig } from "../src/raw-node.js";
import { ConfChangeType } from "../src/types.js";
import type { NodeId } from "../src/types.js";
import { Network, bytes, describeEntry } from "./harness.js";

const TESTDATA = join(dirname(fileURLToPath(import.meta.url)), "..", "testdata");

interface Block {
  readonly comments: string[];
  readonly command: string;
}

/** Reads the commands of a scenario file (the expected outputs are what the test compares against). */
export function parseScenario(text: string): Block[] {
  const lines = text.split("\n");
  const blocks: Block[] = [];
  let comments: string[] = [];
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i];
    if (line.trim() === "") continue;
    if (line.startsWith("#")) {
      comments.push(line);
      continue;
    }
    if (lines[i + 1] !== "----") throw new Error(`line ${i + 1}: command "${line}" must be followed by ----`);
    blocks.push({ comments, command: line });
    comments = [];
    i += 2;
    while (i < lines.length && lines[i].trim() !== "") i++;
  }
  return blocks;
}

class ScenarioRunner {
  private net: Network | null = null;

  private network(): Network {
    if (this.net === null) throw new Error("no cluster yet: start with `cluster n1 n2 n3`");
    return this.net;
  }

  run(command: string): string[] {
    const [verb, ...args] = command.trim().split(/\s+/);
    if (verb === "cluster") return this.cluster(args);
    const net = this.network();
    const start = net.trace.length;
    const extra: string[] = [];
    try {
      this.dispatch(net, verb, args, extra);
    } catch (e) {
      extra.push(`error: ${e instanceof Error ? `${e.name}: ${e.message}` : String(e)}`);
    }
    return [...net.trace.slice(start), ...extra];
  }

  private cluster(args: string[]): string[] {
    const voters = args.filter((a) => !a.includes("="));
    const config: Partial<Record<keyof RawNodeConfig, unknown>> = {};
    for (const opt of args.filter((a) => a.includes("="))) {
      const [k, v] = opt.split("=");
      const num = Number(v);
      switch (k) {
        case "prevote": config.preVote = v === "true"; break;
        case "checkquorum": config.checkQuorum = v === "true"; break;
        case "maxsize": config.maxSizePerMsgBytes = num; break;
        case "maxinflight": config.maxInflightMsgs = num; break;
        default: throw new Error(`unknown cluster option ${k}`);
      }
    }
    const net = new Network([], { trace: true, seed: 1, config: config as Partial<RawNodeConfig> });
    for (const id of voters) net.addMember(id, newBootstrapStorage(voters));
    net.trace.length = 0;
    this.net = net;
    return voters.map((id) => net.describeStatus(id));
  }

  private dispatch(net: Network, verb: string, args: string[], out: string[]): void {
    const none = new Uint8Array();
    switch (verb) {
      case "add-node": {
        net.addMember(args[0]);
        net.trace.length = 0;
        out.push(net.describeStatus(args[0]));
        return;
      }
      case "campaign": net.get(args[0]).node.campaign(); return;
      case "propose": net.get(args[0]).node.propose(bytes(args.slice(1).join(" "))); return;
      case "transfer": net.get(args[0]).node.transferLeader(args[1]); return;
      case "read-index": net.get(args[0]).node.readIndex(bytes(args[1])); return;
      case "add-learner": net.proposeConfChange(args[0], { type: ConfChangeType.AddLearner, node: args[1], context: none }); return;
      case "promote": net.proposeConfChange(args[0], { type: ConfChangeType.AddVoter, node: args[1], context: none }); return;
      case "remove": net.proposeConfChange(args[0], { type: ConfChangeType.Remove, node: args[1], context: none }); return;
      case "tick": {
        const count = Number(args[args.length - 1]);
        net.tick(args.slice(0, -1) as NodeId[], count);
        return;
      }
      case "run": {
        const count = Number(args[args.length - 1]);
        for (let k = 0; k < count; k++) {
          net.tick(args.slice(0, -1) as NodeId[], 1);
          net.stabilize();
        }
        return;
      }
      case "deliver": net.stabilize(); return;
      case "isolate": net.isolate(args[0]); return;
      case "recover": net.recover(); return;
      case "compact": {
        const index = net.compact(args[0]);
        out.push(`${args[0]} compacted its log through index ${index}`);
        return;
      }
      case "status": for (const id of args) out.push(...net.describeStatus(id).split("\n")); return;
      case "log": {
        for (const id of args) {
          const s = net.get(id).storage;
          const ents = s.lastIndex() >= s.firstIndex() ? s.entries(s.firstIndex(), s.lastIndex() + 1, Infinity) : [];
          const snap = s.snapshot().metadata;
          out.push(`${id}: snapshot ${snap.term}/${snap.index} entries [${ents.map(describeEntry).join(", ")}]`);
        }
        return;
      }
      default: throw new Error(`unknown command ${verb}`);
    }
  }
}

export function renderScenario(text: string): string {
  const runner = new ScenarioRunner();
  const parts: string[] = [];
  for (const block of parseScenario(text)) {
    const output = runner.run(block.command);
    parts.push([...block.comments, block.command, "----", ...(output.length > 0 ? output : ["ok"])].join("\n"));
  }
  return `${parts.join("\n\n")}\n`;
}

describe("scenarios", () => {
  const files = readdirSync(TESTDATA).filter((f) => f.endsWith(".txt")).sort();
  it("scenarios - the golden files are present", () => {
    expect(files.length).toBeGreaterThanOrEqual(8);
  });
  for (const file of files) {
    it(`scenarios - ${file.replace(/\.txt$/, "")}`, async () => {
      const text = readFileSync(join(TESTDATA, file), "utf8");
      await expect(renderScenario(text)).toMatchFileSnapshot(join(TESTDATA, file));
    });
  }
});
