#!/usr/bin/env node
// felt's command line: `felt run` (the agent), `felt leases` (the lease table), `felt doctor`
// (what is wrong on this node), `felt --help`.
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import path from 'node:path';
import { COMMANDS, FlagError, helpText, parseFlags } from './flags.js';
import { createLogger } from './log.js';
import { errorText } from './retry.js';
import { agentSettings, leasesSettings } from './settings.js';

function version(): string {
  const here = path.dirname(fileURLToPath(import.meta.url));
  for (const up of ['..', '../..']) {
    try {
      return JSON.parse(readFileSync(path.resolve(here, up, 'package.json'), 'utf8')).version as string;
    } catch {
      /* try the next candidate */
    }
  }
  return 'unknown';
}

function fail(message: string): never {
  process.stderr.write(`felt: error: ${message}\n`);
  process.exit(1);
}

async function runAgent(argv: string[]): Promise<void> {
  const values = parseFlags('run', argv);
  const log = createLogger(String(values['log-level']));
  const { Agent } = await import('./agent.js');
  const agent = new Agent(agentSettings(values), log);

  let stopping: Promise<void> | undefined;
  const shutdown = (signal: string) => {
    if (stopping) return;
    log.info({ signal }, 'shutting down');
    stopping = agent.stop().then(() => process.exit(0), (err) => {
      log.error({ err }, 'shutdown failed');
      process.exit(1);
    });
  };
  process.on('SIGTERM', () => shutdown('SIGTERM'));
  process.on('SIGINT', () => shutdown('SIGINT'));

  try {
    await agent.start();
  } catch (err) {
    if (stopping) return;
    const message = errorText(err);
    log.error({ err: message }, 'start-up failed');
    fail(message);
  }
}

async function main(argv: string[]): Promise<void> {
  const [command, ...rest] = argv;
  if (!command || command === '--help' || command === '-h' || command === 'help') {
    process.stdout.write(`${helpText(rest[0])}\n`);
    return;
  }
  if (command === '--version' || command === 'version') {
    process.stdout.write(`felt ${version()}\n`);
    return;
  }
  if (!COMMANDS[command]) fail(`unknown command "${command}" (try felt --help)`);
  if (rest.includes('--help') || rest.includes('-h')) {
    process.stdout.write(`${helpText(command)}\n`);
    return;
  }
  try {
    if (command === 'run') {
      await runAgent(rest);
    } else if (command === 'leases') {
      const settings = leasesSettings(parseFlags('leases', rest));
      const { runLeasesCommand } = await import('./leases-cmd.js');
      process.exitCode = await runLeasesCommand(settings, process.stdout);
    } else if (command === 'doctor') {
      const { runDoctorCommand } = await import('./doctor/index.js');
      process.exitCode = await runDoctorCommand(parseFlags('doctor', rest), process.stdout);
    }
  } catch (err) {
    if (err instanceof FlagError) fail(err.message);
    throw err;
  }
}

main(process.argv.slice(2)).catch((err) => fail(errorText(err)));
