"""The test suite's duration before and after a change, from two pytest logs, as a results file.

    python tools/dev/record_test_durations.py BEFORE.log AFTER.log --machine "2-core CPU"
        [--out docs/results/test_durations.json]

Each log is pytest's output with ``--durations`` (pytest.ini asks for the 15 slowest): the durations
section and the summary line ("358 passed ... in 1433.87s"). A test's duration is its setup and
call together (a shared fixture's training shows as the setup of the first test that uses it).
"""
import argparse
import re
import sys

from mmcoatnet.utils.results import write_json

DURATION = re.compile(r'^([\d.]+)s (setup|call|teardown)\s+(\S+)')
# pytest's last line, with its '=' frame or (under -q) without
SUMMARY = re.compile(r'^=*\s*(?:\d+ failed, )?(\d+) passed.* in ([\d.]+)s')


def parse(path: str):
    """({test id: seconds}, passed, seconds) of one pytest log."""
    tests, summary = {}, None
    with open(path) as f:
        for line in f:
            match = DURATION.match(line)
            if match:
                seconds, _, test = match.groups()
                test = re.sub(r'\[/[^\]]*/configs/', '[configs/', test)  # ids without the checkout
                tests[test] = tests.get(test, 0.0) + float(seconds)
            found = SUMMARY.search(line)
            if found:
                summary = int(found.group(1)), float(found.group(2))
    if summary is None:
        raise SystemExit(f'error: no pytest summary line ("N passed ... in Ss") in {path}')
    return tests, summary


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('before')
    parser.add_argument('after')
    parser.add_argument('--machine', required=True, help='where both ran, e.g. "2-core CPU"')
    parser.add_argument('--top', type=int, default=15)
    parser.add_argument('--out', default='docs/results/test_durations.json')
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    before, (passed_before, seconds_before) = parse(args.before)
    after, (passed_after, seconds_after) = parse(args.after)
    slowest = sorted(before, key=before.get, reverse=True)[:args.top]
    slowest += [t for t in sorted(after, key=after.get, reverse=True)[:args.top]
                if t not in slowest]
    write_json(args.out, dict(
        machine=args.machine,
        before=dict(passed=passed_before, seconds=seconds_before),
        after=dict(passed=passed_after, seconds=seconds_after),
        slowest=[dict(test=t, before_s=before.get(t), after_s=after.get(t)) for t in slowest]))
    print(f'{args.out}: {seconds_before:.0f} s -> {seconds_after:.0f} s')
    return 0


if __name__ == '__main__':
    sys.exit(main())
