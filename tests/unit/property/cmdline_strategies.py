# Copyright: passthrough.gpu contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Hypothesis strategies for kernel command lines and the files that hold them.

A generated command line comes with the pieces it was built from (white space before each
argument, the arguments as written, the white space at the end), so a property can say which
bytes an edit may touch without parsing the result with the code under test.
"""

import functools
import os

from hypothesis import HealthCheck, settings, strategies as st

# Every property test: enough cases to find the odd quote, fast enough for each `make test`
# (PROPERTY_MAX_EXAMPLES=5000 for a deeper run by hand); no deadline and no too_slow health check,
# as the CPU is shared with lab VMs; no example database in the checkout. Decorate tests with @PROPS.
PROPS = settings(max_examples=int(os.environ.get("PROPERTY_MAX_EXAMPLES", "200")), deadline=None, database=None,
                 suppress_health_check=[HealthCheck.too_slow])

# Keys seen on real hosts, and generated ones in the kernel's alphabet (letters, digits, _ . -).
REAL_KEYS = (
    "quiet", "splash", "ro", "rw", "root", "intel_iommu", "amd_iommu", "iommu", "iommu.passthrough",
    "vfio-pci.ids", "vfio_iommu_type1.allow_unsafe_interrupts", "pcie_acs_override", "video",
    "initcall_blacklist", "console", "hugepagesz", "hugepages", "default_hugepagesz", "isolcpus",
    "nomodeset", "rootflags", "BOOT_IMAGE", "initrd", "systemd.unified_cgroup_hierarchy", "rd.driver.pre",
)
REAL_VALUES = (
    "on", "off", "pt", "1", "0", "/dev/mapper/pve-root", "ZFS=rpool/ROOT/pve-1", "10de:2204,10de:1aef",
    "downstream,multifunction", "ttyS0,115200n8", "efifb:off", "1G", "16", "subvol=@", "UUID=8a3e0c1b-41c5",
    "sysfb_init", "/vmlinuz-6.8.12-4-pve", "vfio-pci",
)
KEY_CHARS = "abcdefxyzIKMNO0189_.-"
VALUE_CHARS = "abcxyzABC0189_-.,:/=+@%"

keys = st.one_of(
    st.sampled_from(REAL_KEYS),
    st.text(alphabet=KEY_CHARS, min_size=1, max_size=8).filter(lambda k: k != "--"),
)
values = st.one_of(st.sampled_from(REAL_VALUES), st.text(alphabet=VALUE_CHARS, max_size=10))


def key_of(arg):
    """The key of a raw argument as the kernel compares it: quotes dropped, '-' the same as '_'."""
    return arg.replace('"', "").split("=", 1)[0].replace("-", "_")


def _with_value(pair):
    key, value = pair
    return key if value is None else "%s=%s" % (key, value)


# An argument as a user asks for it: ``key`` or ``key=value`` (what validate() accepts).
# Strategies are built once: building them in each draw is most of the time such tests take.
WANTED_ARGS = st.tuples(keys, st.one_of(st.none(), values)).map(_with_value)


def wanted_args():
    return WANTED_ARGS


ARG_LISTS = st.lists(WANTED_ARGS, min_size=1, max_size=4, unique_by=key_of)


def arg_lists():
    """One to four arguments with distinct keys, as validate() wants them."""
    return ARG_LISTS


# Inside double quotes: white space, '=', and some non-ASCII, never a quote.
QUOTED_TEXT = st.text(st.sampled_from(list("abc xyz09,.:=+/-_\t") + ["é", "ü", "中"]), max_size=8)
PLAIN_ARGS = [WANTED_ARGS, WANTED_ARGS, WANTED_ARGS, keys.map(lambda k: k + "=")]
QUOTED_ARGS = [
    st.tuples(keys, QUOTED_TEXT).map(lambda kv: '%s="%s"' % kv),
    st.tuples(keys, QUOTED_TEXT).map(lambda kv: '"%s=%s"' % kv),
    keys.map(lambda k: k + '=""'),
]
UNICODE_ARGS = [st.tuples(keys, st.sampled_from(["é", "naïve", "日本", "x\u00e9y"])).map(lambda kv: "%s=%s" % kv)]


@functools.lru_cache(maxsize=None)
def existing_args(quotes=True, unicode=True):
    """One argument as it may already sit on a command line (quoted, unicode, loader-added)."""
    return st.one_of(PLAIN_ARGS + (QUOTED_ARGS if quotes else []) + (UNICODE_ARGS if unicode else []))


@functools.lru_cache(maxsize=None)
def _gap(chars):
    return st.text(alphabet=chars, min_size=1, max_size=3)


@functools.lru_cache(maxsize=None)
def _arg_list(quotes, unicode, max_args):
    return st.lists(existing_args(quotes, unicode), max_size=max_args)


@st.composite
def cmdlines(draw, gap_chars=" \t", quotes=True, unicode=True, separator=True, max_args=8):
    """``(text, leading, [(gap, arg), ...], tail)``: a command line and the pieces it is made of.

    ``separator``: may hold one ``--`` (what follows it goes to init).
    """
    gap = _gap(gap_chars)
    args = draw(_arg_list(quotes, unicode, max_args))
    if separator and args and draw(st.booleans()):
        args.insert(draw(st.integers(0, len(args))), "--")
    leading = draw(gap) if draw(st.booleans()) else ""
    pieces = [(leading if i == 0 else draw(gap), arg) for i, arg in enumerate(args)]
    tail = draw(gap) if draw(st.booleans()) else ""
    if not args:
        leading, tail = "", leading + tail
    text = "".join(g + a for g, a in pieces) + tail
    return text, leading, pieces, tail


def before_separator(args):
    return args[:args.index("--")] if "--" in args else list(args)


def after_separator(args):
    return args[args.index("--"):] if "--" in args else []
