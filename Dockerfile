# felt container image (used by deploy/). Build: docker build -t <registry>/felt:0.1.0 .
#
# Stage 1 compiles the C addon from source (npm ci runs node-gyp) and the TypeScript.
# Stage 2 is a slim runtime with iptables (for --ip-masq / --iptables-forward-rules).
# Both stages are Node 20 on Debian bookworm, so the addon is built against the same Node ABI and
# glibc it runs with.

FROM node:20-bookworm AS build
WORKDIR /src
# package.json's install script runs `node-gyp rebuild --nodedir=/usr` so that nothing is ever
# downloaded; the official image keeps Node's headers under /usr/local/include/node.
RUN ln -s /usr/local/include/node /usr/include/node
COPY package.json package-lock.json binding.gyp ./
COPY native ./native
RUN npm ci --no-audit --no-fund
# Only the agent is compiled (tsconfig.image.json: src/ alone), so bench/, scripts/ and the test
# helpers never reach the image.
COPY tsconfig.json tsconfig.image.json ./
COPY src ./src
RUN npm run build:image \
 && npm prune --omit=dev --no-audit --no-fund \
 && test -f build/Release/felt.node

FROM node:20-bookworm-slim
# iptables: masquerade and forward rules. Debian's default is the nft variant; it must match the
# variant kube-proxy uses on the host (see docs/kubernetes.md).
RUN apt-get update \
 && apt-get install -y --no-install-recommends iptables \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /app
ENV NODE_ENV=production
COPY --from=build /src/package.json ./package.json
COPY --from=build /src/node_modules ./node_modules
COPY --from=build /src/dist ./dist
COPY --from=build /src/build/Release/felt.node ./build/Release/felt.node
# Runs as root: creating the TUN device and iptables rules need CAP_NET_ADMIN (the DaemonSet adds
# only NET_ADMIN and NET_RAW, without privileged mode).
ENTRYPOINT ["node", "/app/dist/src/cli.js", "run"]
