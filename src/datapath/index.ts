// Picks a data path engine by name. The native engine is loaded lazily, so the js engine
// works on a machine where the native one (or its part of the addon) is missing.
import type { Logger } from 'pino';
import { JsDatapath } from './js.js';
import type { NativeDatapathOptions } from './native.js';
import type { Datapath, DatapathConfig } from './types.js';

export type EngineName = 'native' | 'js';
export const ENGINE_NAMES: readonly EngineName[] = ['native', 'js'];

type DatapathClass = new (config: DatapathConfig, log?: Logger, options?: NativeDatapathOptions) => Datapath;

/** Engine-specific tuning; an engine ignores what it has no use for. */
export type EngineTuning = NativeDatapathOptions;

export async function createDatapath(engine: EngineName, config: DatapathConfig, log?: Logger, tuning: EngineTuning = {}): Promise<Datapath> {
  switch (engine) {
    case 'js':
      return new JsDatapath(config, log);
    case 'native': {
      const NativeDatapath = await loadNative();
      try {
        return new NativeDatapath(config, log, tuning);
      } catch (err) {
        throw new Error(`datapath engine "native" cannot be created: ${(err as Error).message}`, { cause: err });
      }
    }
    default:
      throw new Error(`unknown datapath engine "${String(engine)}" (expected one of: ${ENGINE_NAMES.join(', ')})`);
  }
}

async function loadNative(): Promise<DatapathClass> {
  // A computed specifier: this file compiles whether or not native.ts exists yet.
  const specifier = './native.js';
  let mod: { NativeDatapath?: unknown };
  try {
    mod = (await import(specifier)) as { NativeDatapath?: unknown };
  } catch (err) {
    throw new Error(`datapath engine "native" is not available: ${(err as Error).message}`, { cause: err });
  }
  if (typeof mod.NativeDatapath !== 'function') {
    throw new Error('datapath engine "native" is not available: src/datapath/native.ts exports no NativeDatapath class');
  }
  return mod.NativeDatapath as DatapathClass;
}
