// Which source address a datagram arrives with (masquerade tests): a receiver inside a namespace
// that reports each datagram's source, and a one-shot sender. Plain node -e scripts, either family.
import type { Netns } from '../testbed/netns.js';

export type UdpFamily = 'udp4' | 'udp6';

export interface SourceReceiver {
  /** The source address of the next datagram (rejects after 20 s without one). */
  next(): Promise<string>;
  stop(): void;
}

/** Starts a UDP receiver on ip:port in `ns`; resolves once it is bound. */
export async function sourceReceiver(ns: Netns, family: UdpFamily, ip: string, port: number): Promise<SourceReceiver> {
  const socket = family === 'udp6' ? `{type:'udp6',ipv6Only:true}` : `'udp4'`;
  const script = `const s=require('dgram').createSocket(${socket});s.on('message',(m,r)=>console.log(r.address));s.bind(${port},${JSON.stringify(ip)},()=>console.log('ready'));`;
  const child = ns.spawn([process.execPath, '-e', script], { stdio: ['ignore', 'pipe', 'pipe'] });
  const stop = (): void => {
    if (child.exitCode === null) child.kill('SIGKILL');
  };
  const lines: string[] = [];
  const waiters: Array<(l: string) => void> = [];
  let buf = '';
  child.stdout!.setEncoding('utf8');
  child.stdout!.on('data', (c: string) => {
    buf += c;
    let nl: number;
    while ((nl = buf.indexOf('\n')) >= 0) {
      const line = buf.slice(0, nl);
      buf = buf.slice(nl + 1);
      const w = waiters.shift();
      if (w) w(line);
      else lines.push(line);
    }
  });
  const next = (): Promise<string> => {
    const l = lines.shift();
    if (l !== undefined) return Promise.resolve(l);
    return new Promise((resolve, reject) => {
      const t = setTimeout(() => reject(new Error(`no datagram reached ${ns.name}`)), 20_000);
      waiters.push((line) => {
        clearTimeout(t);
        resolve(line);
      });
    });
  };
  const first = await next().catch((e: unknown) => {
    stop();
    throw e;
  });
  if (first !== 'ready') {
    stop();
    throw new Error(`receiver in ${ns.name}: ${first}`);
  }
  return { next, stop };
}

/** Sends one datagram from `ns`, from a fresh socket (a new conntrack entry each time). */
export async function sendOneDatagram(ns: Netns, family: UdpFamily, to: string, port: number): Promise<void> {
  const script = `const s=require('dgram').createSocket('${family}');s.send('x',${port},${JSON.stringify(to)},(e)=>{if(e){console.error(e.message);process.exit(1)}s.close()});`;
  await ns.exec([process.execPath, '-e', script]);
}
