{
  "targets": [
    {
      "target_name": "felt",
      "sources": ["native/addon.c"],
      "cflags_c": ["-std=gnu11", "-Wall", "-Wextra", "-O2"],
      "libraries": ["-lpthread"]
    }
  ]
}
