# Runs inside the fresh root file system (chroot) before it is imported.
set -eu
# A runtime base: images built on it install nothing with apt (they COPY
# from a build stage on the test host), so apt and what only apt uses go,
# purged by dpkg, which keeps its database right. So does e2fsprogs (no file
# systems are made in a container).
dpkg --purge apt libapt-pkg6.0 gpgv debian-archive-keyring \
  libgnutls30 libp11-kit0 libtasn1-6 libhogweed6 libnettle8 libidn2-0 libunistring2 \
  e2fsprogs libext2fs2 logsave libss2 >/dev/null
# No documentation, manual pages or translations (Debian's own slim images do
# the same; the copyright files stay), and no glibc iconv modules: Python
# decodes with its own codecs, and glibc needs no module for UTF-8.
find /usr/share/doc -mindepth 1 -not -name copyright -not -type d -delete
find /usr/share/doc -mindepth 1 -type d -empty -delete
rm -rf /usr/share/man/* /usr/share/info/* /usr/share/groff/* /usr/share/lintian/* \
  /usr/share/locale/* /usr/lib/x86_64-linux-gnu/gconv
rm -rf /var/cache/apt /var/lib/apt /var/log/*.log /var/log/apt
