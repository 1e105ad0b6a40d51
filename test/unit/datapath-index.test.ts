import { describe, expect, it } from 'vitest';
import { parseIPv4, parseSubnet } from '../../src/net/cidr.js';
import { createDatapath, type EngineName } from '../../src/datapath/index.js';
import { JsDatapath } from '../../src/datapath/js.js';
import type { DatapathConfig } from '../../src/datapath/types.js';

const config: DatapathConfig = {
  tunName: 'felt0',
  mtu: 1472,
  network: parseSubnet('10.244.0.0/16'),
  localSubnet: parseSubnet('10.244.1.0/24'),
  bindIP: parseIPv4('192.168.77.2'),
  port: 8285,
};

describe('createDatapath', () => {
  it('creates the js engine without touching any device (start() does that)', async () => {
    const dp = await createDatapath('js', config);
    expect(dp).toBeInstanceOf(JsDatapath);
    expect(dp.engine).toBe('js');
    const s = dp.stats();
    expect(s.engine).toBe('js');
    expect(s.encap).toEqual({ packets: 0, bytes: 0 });
    expect(s.peers).toEqual({});
    // stop() before start() is harmless, and idempotent.
    await dp.stop();
    await dp.stop();
  });

  it('creates the native engine', async () => {
    const dp = await createDatapath('native', config);
    expect(dp.engine).toBe('native');
  });

  it('rejects an unknown engine name with the valid ones', async () => {
    await expect(createDatapath('vpp' as EngineName, config)).rejects.toThrow(/unknown datapath engine "vpp".*native, js/);
  });
});
