/**
 * `hyperfleet vm ...`: create, start, stop, pause, resume, save, restore, list, show, events, console,
 * migrate and delete VMs through the management API.
 */
import { Option, type Command } from "commander";
import type { Vm, VmEvent, VmPriority } from "@hyperfleet/api";
import { enumText, formatBytes, formatDuration, formatKeyValue, formatTable, printJson, printLine } from "../output.js";
import { attachConsole, type ConsoleOptions } from "./console.js";
import { commandGroup, runOperatorCommand, withCommonOptions, type CommonOptions } from "./connection.js";
import { migrateVm, type MigrateOptions } from "./migrate.js";
import { UsageError } from "../run.js";
import { diskBytesOf, integerOf, memoryBytesOf, stopTimeoutMsOf, vcpusOf } from "./values.js";

const PRIORITIES: Record<string, VmPriority> = { high: "VM_PRIORITY_HIGH", normal: "VM_PRIORITY_NORMAL", low: "VM_PRIORITY_LOW" };

/** How much longer than the guest's shutdown time a stop call may take before the CLI gives up. */
const STOP_CALL_MARGIN_MS = 10_000;

interface CreateOptions extends CommonOptions {
  memory: string;
  vcpus: string;
  image: string;
  bootargs: string;
  sbi?: boolean;
  antiAffinity?: string;
  priority: string;
  restart: boolean;
  start: boolean;
  disk: string[];
  integration: boolean;
  nics: string;
  nicMac: string[];
}

interface ListOptions extends CommonOptions {
  node?: string;
}

interface StopOptions extends CommonOptions {
  force?: boolean;
  timeout?: string;
}

interface DeleteOptions extends CommonOptions {
  force?: boolean;
}

interface SavedStateOptions extends CommonOptions {
  as?: string;
  from?: string;
}

/** The saved state `vm save` writes and `vm restore` loads when none is named. */
export const DEFAULT_SAVED_STATE = "saved";

/** One VM event as a line of `vm events`. */
export function eventLine(e: VmEvent): string {
  const at = new Date(e.atMs).toISOString();
  switch (e.event) {
    case "created": return `${at} ${e.vm} created on ${e.created.vm.owner || "-"}`;
    case "deleted": return `${at} ${e.vm} deleted`;
    case "stateChanged":
      return `${at} ${e.vm} ${enumText(e.stateChanged.previousState, "VM_STATE_")} -> ${enumText(e.stateChanged.state, "VM_STATE_")} ` +
        `(desired ${enumText(e.stateChanged.desiredState, "VM_DESIRED_STATE_")}, ${e.stateChanged.reason})`;
    case "ownerChanged":
      return `${at} ${e.vm} owner ${e.ownerChanged.previousOwner || "-"} -> ${e.ownerChanged.owner || "-"} at epoch ${e.ownerChanged.epoch} ` +
        `(${enumText(e.ownerChanged.reason, "OWNER_CHANGE_REASON_")})`;
    case "migration":
      return `${at} ${e.vm} migration ${e.migration.migrationId} ${enumText(e.migration.kind, "VM_MIGRATION_EVENT_KIND_")} ` +
        `${e.migration.sourceNode} -> ${e.migration.targetNode}${e.migration.reason === "" ? "" : ` (${e.migration.reason})`}`;
  }
}

export function stateText(vm: Vm): string {
  const state = enumText(vm.state, "VM_STATE_");
  return vm.migrationId === "" ? state : `${state} (migrating)`;
}

function nodeText(vm: Vm): string {
  return vm.owner === "" ? "-" : vm.owner;
}

/** The rows of `vm list`, one per VM. */
export function vmTable(vms: readonly Vm[], nowMs: number): string {
  const headers = ["NAME", "STATE", "NODE", "MEMORY", "VCPUS", "IMAGE", "PRIORITY", "EPOCH", "AGE"];
  const rows = vms.map((vm) => [
    vm.name,
    stateText(vm),
    nodeText(vm),
    formatBytes(vm.spec.memoryBytes),
    String(vm.spec.vcpus),
    vm.spec.image,
    enumText(vm.spec.priority, "VM_PRIORITY_"),
    String(vm.epoch),
    formatDuration(nowMs - vm.createdAtMs),
  ]);
  return formatTable(headers, rows);
}

/** `vm show`: every field of a VM, one per line. */
export function vmDetails(vm: Vm, nowMs: number): string {
  const pairs: [string, string][] = [
    ["Name", vm.name],
    ["State", enumText(vm.state, "VM_STATE_")],
    ["Desired state", enumText(vm.desiredState, "VM_DESIRED_STATE_")],
    ["Node", nodeText(vm)],
    ["Epoch", String(vm.epoch)],
    ["Memory", formatBytes(vm.spec.memoryBytes)],
    ["vCPUs", String(vm.spec.vcpus)],
    ["Image", vm.spec.image],
    ["Boot mode", enumText(vm.spec.bootMode, "BOOT_MODE_")],
    ["Boot args", vm.spec.bootargs],
    ["Anti-affinity group", vm.spec.antiAffinityGroup],
    ["Priority", enumText(vm.spec.priority, "VM_PRIORITY_")],
    ["Restart policy", enumText(vm.spec.restartPolicy, "RESTART_POLICY_")],
    ["Disks", vm.spec.diskBytes.length === 0 ? "none" : vm.spec.diskBytes.map((b, i) => `disk${i} ${formatBytes(b)}`).join(", ")],
    ["Integration", vm.spec.noIntegration ? "off" : "on"],
    ["NICs", vm.spec.nicMacs.length === 0 ? "none" : vm.spec.nicMacs.map((m, i) => `nic${i} ${m}`).join(", ")],
    ["Guest health", vm.guestHealth === "" ? "unknown" : vm.guestHealth],
    ["Guest KVP", Object.keys(vm.guestKvp).sort().map((k) => `${k}=${vm.guestKvp[k]!}`).join(" ")],
    ["Host KVP", Object.keys(vm.hostKvp).sort().map((k) => `${k}=${vm.hostKvp[k]!}`).join(" ")],
    ["Migration", vm.migrationId],
    ["Saved state", vm.savedState],
    ["Created", `${new Date(vm.createdAtMs).toISOString()} (${formatDuration(nowMs - vm.createdAtMs)} ago)`],
  ];
  if (vm.pendingReason !== "") pairs.splice(2, 0, ["Pending because", vm.pendingReason]);
  return formatKeyValue(pairs);
}

/**
 * One line after a change: "started web: running on n1". A VM asked to run that its owner has not
 * started yet reads "starting" (not the state it is leaving, such as saved).
 */
function changed(verb: string, vm: Vm): string {
  const leaving = vm.desiredState === "VM_DESIRED_STATE_RUNNING" && (vm.state === "VM_STATE_SAVED" || vm.state === "VM_STATE_STOPPED");
  return `${verb} ${vm.name}: ${leaving ? "starting" : stateText(vm)}${vm.owner === "" ? "" : ` on ${vm.owner}`}`;
}

function report(options: CommonOptions, verb: string, vm: Vm): void {
  if (options.json) printJson(vm);
  else printLine(changed(verb, vm));
}

/** Adds the `vm` command and its subcommands to `program`. */
export function registerVmCommands(parent: Command): void {
  const vm = commandGroup(parent, "vm").description("create, run, inspect and move VMs");

  withCommonOptions(vm.command("create").argument("<name>", "the VM's name (lowercase letters, digits and '-')"))
    .description("create a VM (and start it, unless --no-start)")
    .option("--memory <size>", "RAM size (K/M/G suffix; no suffix means MiB)", "128M")
    .option("--vcpus <n>", "number of virtual processors", "1")
    .requiredOption("--image <image>", "the guest image to boot")
    .option("--bootargs <text>", "kernel command line", "")
    .option("--sbi", "boot as SBI firmware: the image is a kernel started in S-mode")
    .option("--anti-affinity <group>", "never place this VM on a node with another VM of the group")
    .addOption(new Option("--priority <priority>", "who keeps running when capacity runs out").choices(Object.keys(PRIORITIES)).default("normal"))
    .option("--no-restart", "leave the VM stopped when its node fails (default: restart it elsewhere)")
    .option("--no-start", "create the VM stopped")
    .option("--disk <size>", "add a virtual disk on cluster storage (K/M/G suffix; no suffix means MiB); repeat for more disks",
      (value: string, previous: string[]) => [...previous, value], [] as string[])
    .option("--no-integration", "do not offer the guest the integration services (heartbeat, shutdown, time sync, KVP)")
    .option("--nics <n>", "add this many synthetic NICs, with MACs the cluster assigns (0 to 8)", "0")
    .option("--nic-mac <mac>", "add a synthetic NIC with this MAC (02:48:xx:xx:xx:xx); repeat for more NICs; not with --nics",
      (value: string, previous: string[]) => [...previous, value], [] as string[])
    .action((name: string, options: CreateOptions) =>
      runOperatorCommand(options, async (cluster) => {
        const memoryBytes = memoryBytesOf("--memory", options.memory);
        const vcpus = vcpusOf(options.vcpus);
        const diskBytes = options.disk.map((d) => diskBytesOf("--disk", d));
        const nics = integerOf("--nics", options.nics, 0, 8);
        const created = await cluster.call((c, o) =>
          c.createVm(
            {
              name,
              memoryBytes,
              vcpus,
              image: options.image,
              bootMode: options.sbi ? "BOOT_MODE_SBI" : "BOOT_MODE_BARE",
              bootargs: options.bootargs,
              antiAffinityGroup: options.antiAffinity ?? "",
              priority: PRIORITIES[options.priority]!,
              restartPolicy: options.restart ? "RESTART_POLICY_RESTART" : "RESTART_POLICY_DO_NOT_RESTART",
              start: options.start,
              diskBytes,
              noIntegration: !options.integration,
              nics,
              nicMacs: options.nicMac,
            },
            o,
          ),
        );
        report(options, "created", created);
      }),
    );

  withCommonOptions(vm.command("list"))
    .description("list VMs")
    .option("--node <node>", "only the VMs on this node")
    .action((options: ListOptions) =>
      runOperatorCommand(options, async (cluster) => {
        const { vms } = await cluster.call((c, o) => c.listVms({ node: options.node ?? "" }, o));
        if (options.json) printJson(vms);
        else printLine(vmTable(vms, Date.now()));
      }),
    );

  withCommonOptions(vm.command("show").argument("<name>", "the VM"))
    .description("show everything about one VM")
    .action((name: string, options: CommonOptions) =>
      runOperatorCommand(options, async (cluster) => {
        const found = await cluster.call((c, o) => c.getVm({ name }, o));
        if (options.json) printJson(found);
        else printLine(vmDetails(found, Date.now()));
      }),
    );

  withCommonOptions(vm.command("start").argument("<name>", "the VM"))
    .description("start a stopped VM")
    .action((name: string, options: CommonOptions) =>
      runOperatorCommand(options, async (cluster) => report(options, "started", await cluster.call((c, o) => c.startVm({ name }, o)))),
    );

  withCommonOptions(vm.command("stop").argument("<name>", "the VM"))
    .description("shut a VM down (the guest is asked first; --force turns it off)")
    .option("--force", "turn the VM off without asking the guest")
    .option("--timeout <seconds>", "how long the guest has to shut down before it is turned off (default: the server's)")
    .action((name: string, options: StopOptions) =>
      runOperatorCommand(options, async (cluster) => {
        if (options.force && options.timeout !== undefined) throw new UsageError("--timeout is for a clean shutdown: --force turns the VM off at once");
        const timeoutMs = options.timeout === undefined ? 0 : stopTimeoutMsOf(options.timeout);
        const stopped = await cluster.call(
          (c, o) => c.stopVm({ name, force: options.force === true, timeoutMs }, o),
          timeoutMs === 0 ? {} : { timeoutMs: timeoutMs + STOP_CALL_MARGIN_MS },
        );
        report(options, "stopped", stopped);
      }),
    );

  withCommonOptions(vm.command("kvp").argument("<name>", "the VM").argument("<key=value|key>", "the value to set, or with --delete the key"))
    .description("offer the guest a value through the KVP integration service (kept by the cluster; the guest reads it wherever it runs)")
    .option("--delete", "take the key back instead")
    .action((name: string, entry: string, options: CommonOptions & { delete?: boolean }) =>
      runOperatorCommand(options, async (cluster) => {
        const eq = entry.indexOf("=");
        if (options.delete === true && eq >= 0) throw new UsageError("--delete takes a key, not key=value");
        if (options.delete !== true && eq <= 0) throw new UsageError(`expected key=value, got ${JSON.stringify(entry)}`);
        const request = options.delete === true ? { name, key: entry, delete: true } : { name, key: entry.slice(0, eq), value: entry.slice(eq + 1) };
        report(options, options.delete === true ? `took ${entry} back from` : `set ${request.key} for`, await cluster.call((c, o) => c.setVmKvp(request, o)));
      }),
    );

  withCommonOptions(vm.command("pause").argument("<name>", "the VM"))
    .description("pause a running VM (its memory stays)")
    .action((name: string, options: CommonOptions) =>
      runOperatorCommand(options, async (cluster) => report(options, "paused", await cluster.call((c, o) => c.pauseVm({ name }, o)))),
    );

  withCommonOptions(vm.command("resume").argument("<name>", "the VM"))
    .description("resume a paused VM")
    .action((name: string, options: CommonOptions) =>
      runOperatorCommand(options, async (cluster) => report(options, "resumed", await cluster.call((c, o) => c.resumeVm({ name }, o)))),
    );

  withCommonOptions(vm.command("save").argument("<name>", "the VM"))
    .description("write a running or paused VM's whole state to a saved state on its node and turn it off; `vm start` restores it")
    .option("--as <saved-state>", "the saved state's name", DEFAULT_SAVED_STATE)
    .action((name: string, options: SavedStateOptions) =>
      runOperatorCommand(options, async (cluster) => {
        const saved = await cluster.call((c, o) => c.saveVm({ name, savedState: options.as ?? DEFAULT_SAVED_STATE }, o), { timeoutMs: 130_000 });
        if (options.json) printJson(saved);
        else printLine(`saved ${name} as ${saved.savedState} (${formatBytes(saved.sizeBytes)}) on ${saved.vm.owner}`);
      }),
    );

  withCommonOptions(vm.command("restore").argument("<name>", "the VM"))
    .description("run a stopped or saved VM again from a saved state")
    .option("--from <saved-state>", "the saved state's name", DEFAULT_SAVED_STATE)
    .action((name: string, options: SavedStateOptions) =>
      runOperatorCommand(options, async (cluster) =>
        report(options, "restored", await cluster.call((c, o) => c.restoreVm({ name, savedState: options.from ?? DEFAULT_SAVED_STATE }, o), { timeoutMs: 70_000 })),
      ),
    );

  withCommonOptions(vm.command("events").argument("[name]", "only this VM's events"))
    .description("follow VM events (created, state, owner, migrations) as they happen; Ctrl-C stops")
    .option("--count <n>", "stop after this many events")
    .action((name: string | undefined, options: CommonOptions & { count?: string }) =>
      runOperatorCommand(options, async (cluster) => {
        const limit = options.count === undefined ? Infinity : integerOf("--count", options.count, 1, 1_000_000);
        const stream = cluster.client.watchVmEvents({ vm: name ?? "" });
        const onSigint = (): void => stream.cancel();
        process.on("SIGINT", onSigint);
        let seen = 0;
        try {
          for await (const e of stream) {
            if (options.json) printLine(JSON.stringify(e));
            else printLine(eventLine(e));
            if (++seen >= limit) break;
          }
        } finally {
          process.off("SIGINT", onSigint);
          stream.cancel();
        }
      }),
    );

  withCommonOptions(vm.command("delete").argument("<name>", "the VM"))
    .description("delete a stopped VM")
    .option("--force", "delete it even if it is running")
    .action((name: string, options: DeleteOptions) =>
      runOperatorCommand(options, async (cluster) => {
        await cluster.call((c, o) => c.deleteVm({ name, force: options.force === true }, o));
        if (options.json) printJson({ name, deleted: true });
        else printLine(`deleted ${name}`);
      }),
    );

  withCommonOptions(vm.command("console").argument("<name>", "the VM"))
    .description("attach to a VM's serial console: its history, then live output; what you type goes to the guest; Ctrl-] detaches")
    .action((name: string, options: ConsoleOptions) => runOperatorCommand(options, (cluster) => attachConsole(cluster, name, options)));

  withCommonOptions(vm.command("migrate").argument("<name>", "the VM"))
    .description("move a VM to another node while it runs, showing each copy round")
    .option("--to <node>", "the target node (default: the cluster chooses)")
    .option("--quick", "pause, copy and resume in one go (no pre-copy rounds)")
    .option("--downtime-limit <ms>", "longest pause allowed for the final copy, in milliseconds (default: the server's)")
    .option("--bandwidth-limit <rate>", "cap the copy rate: 1G, 500M (bits/s) or 125MB/s (bytes/s)")
    .option("--max-rounds <n>", "most pre-copy rounds before --policy applies (default: the server's)")
    .addOption(new Option("--policy <policy>", "when the copy does not converge: force the final copy, cancel, or slow the guest").choices(["force", "cancel", "auto-converge"]))
    .action((name: string, options: MigrateOptions) => runOperatorCommand(options, (cluster) => migrateVm(cluster, name, options)));
}
