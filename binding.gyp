{
  "targets": [
    {
      "target_name": "felt",
      "sources": [
        "native/addon.c",
        "native/addon_engine.c",
        "native/addon_jsio.c",
        "native/addon_probe.c",
        "native/addon_reader.c",
        "native/addon_util.c",
        "native/csum.c",
        "native/engine.c",
        "native/engine_ctl.c",
        "native/err.c",
        "native/gro.c",
        "native/gso.c",
        "native/ipv4.c",
        "native/ipv6.c",
        "native/map6.c",
        "native/netlink.c",
        "native/probe.c",
        "native/reader.c",
        "native/reader_tun.c",
        "native/reader_udp.c",
        "native/routes.c",
        "native/stats.c",
        "native/sys.c",
        "native/tun.c",
        "native/tun_offload.c",
        "native/u32map.c",
        "native/udp.c",
        "native/udp_batch.c",
        "native/writer.c"
      ],
      "defines": ["_GNU_SOURCE"],
      "cflags_c": ["-std=gnu11", "-Wall", "-Wextra", "-O2"],
      "libraries": ["-lpthread"]
    }
  ]
}
