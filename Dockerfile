# syntax=docker/dockerfile:1
# The zring image: what charts/zring runs as the istio-proxy container of the node
# proxy DaemonSet (and what Istio's own ztunnel chart can run with
# `--set image=<registry>/zring:<tag>`).
#
#   docker build -t zring:0.1.0 .            (from the repository's root, x86-64)
#
# Stage 1 builds on Debian 12 the way scripts/setup.sh does: Debian's packages, then
# the pinned wolfSSL (Debian's 5.5.4 source package built with AES-NI and assembly,
# scripts/build-wolfssl.sh), then a release build (LTO) of the zring binary alone.
# Stage 2 is Debian 12 slim with the four shared libraries zring needs from Debian,
# the pinned libwolfssl and zring, and no other tools: no shell utilities beyond the
# base image's, no iptables or iproute2 (istio-cni sets up the pods' capture rules).
#
# This file has not been built here: the machine it was written on has no container
# engine. Report what breaks.

FROM debian:12 AS build
ENV DEBIAN_FRONTEND=noninteractive
WORKDIR /src
COPY . .
# A developer's build dirs and deps/ (absolute paths of another machine) must not leak
# into the build.
RUN rm -rf build build-asan build-tsan deps bench/out .git
RUN bash scripts/setup.sh --no-build \
 && prefix=$(bash scripts/build-wolfssl.sh | tail -n 1) \
 && meson setup build --buildtype=release -Db_lto=true -Dwolfssl_prefix="$prefix" \
 && ninja -C build engine/zring \
 && build/engine/zring --help >/dev/null \
 && mkdir -p /out/usr/local/bin /out/usr/local/lib \
 && install -m 0755 -s build/engine/zring /out/usr/local/bin/zring \
 && cp -a "$prefix"/lib/libwolfssl.so* /out/usr/local/lib/ \
 && install -m 0755 docker/entrypoint.sh /out/usr/local/bin/zring-entrypoint

FROM debian:12-slim
# zring's shared libraries from Debian (libc6 is in the base image); libwolfssl comes
# from the build stage into /usr/local/lib, which the loader searches (ldconfig below).
RUN apt-get update \
 && apt-get install -y --no-install-recommends liburing2 libnghttp2-14 libjansson4 libyaml-0-2 \
 && apt-get clean \
 && rm -rf /var/lib/apt/lists/* /var/cache/apt/*
COPY --from=build /out/ /
# Fails the build if the loader cannot find a library zring needs.
RUN ldconfig && /usr/local/bin/zring --help >/dev/null
# ztunnel's default mode: every pod of the node, handed over by istio-cni.
ENV PROXY_MODE=shared
# 15008 HBONE (in the pods' namespaces), 15020 metrics, 15021 readiness
EXPOSE 15008 15020 15021
ENTRYPOINT ["/usr/local/bin/zring-entrypoint"]
