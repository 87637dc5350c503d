#!/usr/bin/env bash
# Build dist/syncd_<version>_<arch>.deb: syncd in its own virtualenv at /opt/syncd, made
# here from Debian's /usr/bin/python3 (so the server needs no compiler: systemd-python is
# compiled now), the systemd units, sysusers/tmpfiles entries, the example config as the
# conffile /etc/syncd/syncd.yaml, and maintainer scripts that never start the service.
#
#   bash scripts/build-deb.sh            # prints the path of the .deb
#
# Needs (scripts/bootstrap.sh installs them): python3-venv, python3-dev, gcc, pkg-config,
# libsystemd-dev. Wheels are cached in build/deb/wheels, so a rebuild only makes syncd's own.
set -euo pipefail
cd "$(dirname "$0")/.."

PY=/usr/bin/python3
VERSION=$(sed -n 's/^__version__ = "\(.*\)"$/\1/p' syncd/__init__.py)
ARCH=$(dpkg --print-architecture)
BUILD=$PWD/build/deb
ROOT=$BUILD/root
WHEELS=$BUILD/wheels
OUT=dist/syncd_${VERSION}_${ARCH}.deb
# Who the package names as its maintainer (Debian wants a deliverable-looking address).
MAINTAINER=${SYNCD_DEB_MAINTAINER:-syncd maintainers <syncd@users.noreply.github.com>}
[ -n "$VERSION" ] || { echo "build-deb: no __version__ in syncd/__init__.py" >&2; exit 1; }

rm -rf "$ROOT" "$BUILD/src"
mkdir -p "$ROOT" "$WHEELS" dist

# 1. The virtualenv, at its final path inside the staging root.
"$PY" -m venv "$ROOT/opt/syncd"
VPY=$ROOT/opt/syncd/bin/python
# Only our own cache and PyPI: a machine-wide PIP_FIND_LINKS may hold wheels built by
# another Python (a systemd-python linked against it would carry its library path).
export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_COMPILE=1 PIP_NO_CACHE_DIR=1 PIP_FIND_LINKS=$WHEELS

# 2. syncd's wheel from a clean copy of the tracked files (no .venv, no build leftovers),
#    then its dependencies from the wheel cache, filling the cache from PyPI when needed.
mkdir -p "$BUILD/src"
git ls-files -z | xargs -0 cp --parents -t "$BUILD/src"
rm -f "$WHEELS"/syncd-*.whl
"$VPY" -m pip wheel -q --no-deps --wheel-dir "$WHEELS" "$BUILD/src"
WHEEL=$(ls "$WHEELS"/syncd-"$VERSION"-*.whl)
if ! "$VPY" -m pip install -q --no-index --find-links "$WHEELS" "$WHEEL" 2>/dev/null; then
    # systemd-python has no wheel on PyPI: it is compiled here, against Debian's python3.
    "$VPY" -m pip wheel -q --use-pep517 --wheel-dir "$WHEELS" --no-binary systemd-python "$WHEEL"
    "$VPY" -m pip install -q --no-index --find-links "$WHEELS" "$WHEEL"
fi
"$VPY" -m pip uninstall -q -y pip setuptools   # not needed at run time; the server installs nothing

# 3. Make the virtualenv relocatable to /opt/syncd: scripts and pyvenv.cfg name the staging path.
grep -rlI --null "$ROOT" "$ROOT/opt/syncd" | xargs -0 -r sed -i "s#$ROOT##g"
find "$ROOT/opt/syncd" -name __pycache__ -type d -prune -exec rm -rf {} +
find "$ROOT/opt/syncd" -name '*.so' -exec strip --strip-unneeded {} +

# 4. Units, sysusers/tmpfiles, config, documentation.
install -D -m 0644 deploy/syncd.service "$ROOT/lib/systemd/system/syncd.service"
install -D -m 0644 deploy/syncd@.service "$ROOT/lib/systemd/system/syncd@.service"
install -D -m 0644 deploy/sysusers.d/syncd.conf "$ROOT/usr/lib/sysusers.d/syncd.conf"
install -D -m 0644 deploy/tmpfiles.d/syncd.conf "$ROOT/usr/lib/tmpfiles.d/syncd.conf"
install -D -m 0644 config/syncd.example.yaml "$ROOT/etc/syncd/syncd.yaml"
mkdir -p "$ROOT/usr/bin"
ln -s /opt/syncd/bin/syncd "$ROOT/usr/bin/syncd"
DOC=$ROOT/usr/share/doc/syncd
install -D -m 0644 deploy/debian/copyright "$DOC/copyright"
install -D -m 0644 README.md "$DOC/README.md"
install -D -m 0644 deploy/README.md "$DOC/DEPLOY.md"
install -D -m 0644 deploy/prometheus/alerts.yml "$DOC/examples/prometheus-alerts.yml"
install -D -m 0644 deploy/grafana/syncd.json "$DOC/examples/grafana-dashboard.json"
install -D -m 0644 deploy/drop-in/drop-folders.conf "$DOC/examples/drop-folders.conf"
install -D -m 0644 CHANGELOG.md "$DOC/CHANGELOG.md"
# A native package's changelog, in Debian's format, from this version's entry.
{
    echo "syncd ($VERSION) unstable; urgency=medium"
    echo
    echo "  * Release $VERSION; see /usr/share/doc/syncd/CHANGELOG.md."
    echo
    echo " -- $MAINTAINER  $(date -R -u -d "@$(git log -1 --format=%ct)")"
} | gzip -9n > "$DOC/changelog.gz"
install -D -m 0644 deploy/debian/lintian-overrides "$ROOT/usr/share/lintian/overrides/syncd"

# 5. Control files, then the archive (owned by root whoever builds it).
mkdir -p "$ROOT/DEBIAN"
install -m 0755 deploy/debian/postinst deploy/debian/prerm deploy/debian/postrm "$ROOT/DEBIAN/"
install -m 0644 deploy/debian/conffiles "$ROOT/DEBIAN/conffiles"
SIZE=$(du -sk --exclude=DEBIAN "$ROOT" | cut -f1)
sed -e "s/@VERSION@/$VERSION/" -e "s/@ARCH@/$ARCH/" -e "s/@SIZE@/$SIZE/" -e "s|@MAINTAINER@|$MAINTAINER|" \
    deploy/debian/control.in > "$ROOT/DEBIAN/control"
(cd "$ROOT" && find . -path ./DEBIAN -prune -o -type f -printf '%P\0' | LC_ALL=C sort -z | xargs -0 md5sum) \
    > "$ROOT/DEBIAN/md5sums"
chmod 0644 "$ROOT/DEBIAN/md5sums"
dpkg-deb --root-owner-group -Zgzip --build "$ROOT" "$OUT" >/dev/null
echo "$OUT"
