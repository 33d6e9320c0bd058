"""`hubgate -t -c FILE` rejects broken configs with FILE:LINE:COL messages.

Each case writes one broken config, runs the check and asserts a non-zero
exit and the expected lines on stderr. The LINE:COL of every expectation was
counted by hand from the YAML next to it (1-based; a quoted value starts at
its opening quote) and is never taken from the program's output. The
annotated example config must pass.

Needs only the binary: HUBGATE=path/to/hubgate.
"""

import os
import subprocess
import sys
import tempfile
import unittest

HUBGATE = os.environ.get("HUBGATE", "")
SOURCE_DIR = os.environ.get(
    "HG_SOURCE_DIR",
    os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))

# One listener (lines 1-3) and one route (lines 4-7) that are valid, for
# cases whose error is elsewhere.
LISTENERS = """listeners:
  - name: l
    bind: 127.0.0.1:18883
"""
ROUTES = """routes:
  - name: r
    sni: a.example
    backend: b.example
"""

# (name, config, {extra file name: content}, [(file, line, col, fragment)])
# file "" is the config itself. Line numbers are in the comments.
CASES = [
    ("unknown key",
     # 1 workers: auto
     # 2 tiemouts:
     "workers: auto\n"
     "tiemouts:\n"
     "  connect: 5s\n" + LISTENERS + ROUTES,
     {}, [("", 2, 1, 'unknown key "tiemouts"')]),

    ("list where a scalar goes",
     # 2   connect: [5s, 10s]     "  connect: " is 11 characters
     "timeouts:\n"
     "  connect: [5s, 10s]\n" + LISTENERS + ROUTES,
     {}, [("", 2, 12, '"connect" must be a duration, not a list')]),

    ("mapping where a scalar goes",
     # 7     backend: {host: b}   "    backend: " is 13 characters
     LISTENERS + "routes:\n"
     "  - name: r\n"
     "    sni: a.example\n"
     "    backend: {host: b}\n",
     {}, [("", 7, 14, '"backend" must be a host name, not a mapping')]),

    ("empty names",
     # 2   - name: ""             "  - name: " is 10 characters
     # 5   - name: ''
     'listeners:\n'
     '  - name: ""\n'
     '    bind: 127.0.0.1:18883\n'
     'routes:\n'
     "  - name: ''\n"
     '    sni: a.example\n'
     '    backend: b.example\n',
     {}, [("", 2, 11, 'invalid listener name ""'),
          ("", 5, 11, 'invalid route name ""')]),

    ("bare number for a duration",
     # 2   idle: 30               "  idle: " is 8 characters
     "timeouts:\n"
     "  idle: 30\n" + LISTENERS + ROUTES,
     {}, [("", 2, 9,
           'invalid duration "30" (a unit is required: ms, s, m, h)')]),

    ("bad unit",
     # 1 tcp_keepalive: 2min      "tcp_keepalive: " is 15 characters
     "tcp_keepalive: 2min\n" + LISTENERS + ROUTES,
     {}, [("", 1, 16,
           'invalid duration "2min" (unknown unit; use ms, s, m, h)')]),

    ("size out of range",
     # 1 max_hello: 32MiB         "max_hello: " is 11 characters
     "max_hello: 32MiB\n" + LISTENERS + ROUTES,
     {}, [("", 1, 12, '"max_hello" out of range: "32MiB"')]),

    ("bad CIDR inline",
     # 4     allow: [10.0.0.0/8, 192.168.0.0/33]
     #       "    allow: [" is 12: 10.0.0.0/8 at 13..22, ", " 23-24
     "listeners:\n"
     "  - name: l\n"
     "    bind: 127.0.0.1:18883\n"
     "    allow: [10.0.0.0/8, 192.168.0.0/33]\n" + ROUTES,
     {}, [("", 4, 25, 'invalid CIDR "192.168.0.0/33" (an IPv4 prefix '
                      'length must be 0..32)')]),

    ("bad CIDR inside an allow file",
     # sites.txt line 4: "  198.51.100.0/24x   # typo", two spaces first
     LISTENERS.rstrip("\n") + "\n"
     "    allow: [\"file:sites.txt\"]\n" + ROUTES,
     {"sites.txt": "# customer sites\n"
                   "203.0.113.0/24\n"
                   "\n"
                   "  198.51.100.0/24x   # typo\n"},
     [("sites.txt", 4, 3, 'invalid CIDR "198.51.100.0/24x"')]),

    ("missing allow file",
     # 4     allow: [10.0.0.0/8, "file:nope.txt"]
     #       "    allow: [" is 12: 10.0.0.0/8 at 13..22, ", " 23-24
     LISTENERS +
     "    allow: [10.0.0.0/8, \"file:nope.txt\"]\n" + ROUTES,
     {}, [("", 4, 25, 'cannot read allow file')]),

    ("duplicate SNI across routes",
     # 9     sni: [other.example.net, Hub.Example.Net.]
     #       "    sni: [" is 10: other.example.net at 11..27, ", " 28-29
     LISTENERS + "routes:\n"
     "  - name: a\n"
     "    sni: [hub.example.net]\n"
     "    backend: b.example\n"
     "  - name: b\n"
     "    sni: [other.example.net, Hub.Example.Net.]\n"
     "    backend: c.example\n",
     {}, [("", 9, 30, 'duplicate server name "Hub.Example.Net." '
                      '(also in route "a")')]),

    ("default_route naming a missing route",
     # 8 default_route: hub-x     "default_route: " is 15 characters
     LISTENERS + ROUTES + "default_route: hub-x\n",
     {}, [("", 8, 16, 'default_route "hub-x" does not name a route')]),

    ("bad bind address",
     # 3     bind: ["127.0.0.1", "[::1]:99999"]
     #       "    bind: [" is 11: "127.0.0.1" at 12..22, ", " 23-24
     "listeners:\n"
     "  - name: l\n"
     "    bind: [\"127.0.0.1\", \"[::1]:99999\"]\n" + ROUTES,
     {}, [("", 3, 12, 'invalid bind address "127.0.0.1" (a port is '
                      'required'),
          ("", 3, 25, 'invalid bind address "[::1]:99999" (the port must '
                      'be 1..65535)')]),

    ("IPv4 bind address in IPv6 form",
     "listeners:\n"
     "  - name: l\n"
     "    bind: [\"[::ffff:127.0.0.1]:8883\"]\n" + ROUTES,
     {}, [("", 3, 12, 'invalid bind address "[::ffff:127.0.0.1]:8883" (an '
                      'IPv4 address is written as one')]),

    ("invalid wildcard",
     # 6     sni: ["a*.example.net", "*"]
     #       "    sni: [" is 10: "a*.example.net" at 11..26, ", " 27-28
     LISTENERS + "routes:\n"
     "  - name: r\n"
     "    sni: [\"a*.example.net\", \"*\"]\n"
     "    backend: b.example\n",
     {}, [("", 6, 11, 'invalid server name "a*.example.net"'),
          ("", 6, 29, 'invalid server name "*"')]),

    ("bind address on admin.listen's port",
     # 5     bind: ["0.0.0.0:9100", "127.0.0.1:9101"]
     "admin:\n"
     "  listen: \"127.0.0.1:9100\"\n"
     "listeners:\n"
     "  - name: l\n"
     "    bind: [\"0.0.0.0:9100\", \"127.0.0.1:9101\"]\n" + ROUTES,
     {}, [("", 5, 12, 'bind address "0.0.0.0:9100" takes admin.listen\'s '
                      'port')]),

    ("quoted number",
     # 3     max_connections: "10"    "    max_connections: " is 21
     "listeners:\n"
     "  - name: l\n"
     "    max_connections: \"10\"\n"
     "    bind: [\"127.0.0.1:8883\"]\n" + ROUTES,
     {}, [("", 3, 22, 'invalid max_connections "10" (a number, not '
                      'quoted)')]),

    ("server name label with a hyphen at an end",
     LISTENERS + "routes:\n"
     "  - name: r\n"
     "    sni: [\"*.-bad-.net\"]\n"
     "    backend: b.example\n",
     {}, [("", 6, 11, 'invalid server name "*.-bad-.net" (a label begins '
                      'or ends with \'-\')')]),

    ("YAML syntax error",
     # 3   level: info: debug     "  level: info" is 13, ':' at 14
     "workers: auto\n"
     "log:\n"
     "  level: info: debug\n" + LISTENERS + ROUTES,
     {}, [("", 3, 14, 'syntax error: mapping values are not allowed')]),

    ("duplicate key",
     # 3 workers: 4
     "workers: 2\n"
     "max_hello: 64KiB\n"
     "workers: 4\n" + LISTENERS + ROUTES,
     {}, [("", 3, 1, 'duplicate key "workers"')]),

    ("route without backend",
     # 5   - name: r              the mapping starts at "name", column 5
     LISTENERS + "routes:\n"
     "  - name: r\n"
     "    sni: a.example\n",
     {}, [("", 5, 5, 'missing required key "backend"')]),

    ("no routes at all",
     # 1 listeners:               the top-level mapping starts at 1:1
     LISTENERS,
     {}, [("", 1, 1, 'missing required key "routes"')]),

    ("min_ttl greater than max_ttl",
     # 2   min_ttl: 10m           "  min_ttl: " is 11 characters
     "resolver:\n"
     "  min_ttl: 10m\n"
     "  max_ttl: 1m\n" + LISTENERS + ROUTES,
     {}, [("", 2, 12, 'min_ttl "10m" is greater than max_ttl "1m"')]),

    ("bad resolver server",
     # 2   servers: ["10.0.0.53", "dns.example"]
     #       "  servers: [" is 12: "10.0.0.53" at 13..23, ", " 24-25
     "resolver:\n"
     "  servers: [\"10.0.0.53\", \"dns.example\"]\n" + LISTENERS + ROUTES,
     {}, [("", 2, 26, 'invalid resolver server "dns.example"')]),
]

# Several errors in one file: every one is reported, in file order.
MANY = (
    "workers: 0\n"                 # 1: value at 10
    "timeouts:\n"                  # 2
    "  hello: 10\n"                # 3: "  hello: " is 9, value at 10
    "listeners:\n"                 # 4
    "  - name: l\n"                # 5
    "    bind: 127.0.0.1\n"        # 6: "    bind: " is 10, value at 11
    "routes:\n"                    # 7
    "  - name: r\n"                # 8
    "    sni: [\"*\"]\n"           # 9: "    sni: [" is 10, quote at 11
    "    backend: b.example:0\n"   # 10: "    backend: " is 13, value at 14
    "default_route: nope\n"        # 11: value at 16
)
MANY_EXPECTED = [
    ("", 1, 10, 'invalid workers "0"'),
    ("", 3, 10, 'invalid duration "10"'),
    ("", 6, 11, 'invalid bind address "127.0.0.1"'),
    ("", 9, 11, 'invalid server name "*"'),
    ("", 10, 14, 'invalid backend "b.example:0"'),
    ("", 11, 16, 'default_route "nope" does not name a route'),
]


def run_check(path):
    """Runs hubgate -t -c path; returns (exit code, stderr lines)."""
    proc = subprocess.run([HUBGATE, "-t", "-c", path],
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          timeout=60)
    return proc.returncode, proc.stderr.decode("utf-8", "replace")


class ConfigCheck(unittest.TestCase):

    def setUp(self):
        if not HUBGATE or not os.access(HUBGATE, os.X_OK):
            self.fail("HUBGATE must name the hubgate binary")
        self.dir = tempfile.TemporaryDirectory(prefix="hg_config_check.")
        self.addCleanup(self.dir.cleanup)

    def write(self, name, text):
        path = os.path.join(self.dir.name, name)
        with open(path, "w") as f:
            f.write(text)
        return path

    def assert_reported(self, stderr, path, expected):
        """Each (file, line, col, fragment) is one line of stderr."""
        lines = stderr.splitlines()
        for file, line, col, fragment in expected:
            where = os.path.join(self.dir.name, file) if file else path
            prefix = f"{where}:{line}:{col}: "
            found = [x for x in lines
                     if x.startswith(prefix) and fragment in x[len(prefix):]]
            self.assertTrue(found, f"no line {prefix}...{fragment}\n"
                                   f"stderr was:\n{stderr}")

    def check_broken(self, config, files, expected, name="hubgate.yaml"):
        for fname, content in files.items():
            self.write(fname, content)
        path = self.write(name, config)
        code, stderr = run_check(path)
        self.assertNotEqual(code, 0, f"exit 0 for a broken config:\n{config}")
        self.assertNotIn("Sanitizer", stderr)
        self.assert_reported(stderr, path, expected)
        return stderr

    def test_broken_configs(self):
        self.assertGreaterEqual(len(CASES), 10)
        for i, (name, config, files, expected) in enumerate(CASES):
            with self.subTest(case=name):
                self.check_broken(config, files, expected,
                                  name=f"case{i}.yaml")

    def test_several_errors_all_reported(self):
        stderr = self.check_broken(MANY, {}, MANY_EXPECTED)
        path = os.path.join(self.dir.name, "hubgate.yaml")
        reported = [x for x in stderr.splitlines()
                    if x.startswith(path + ":")]
        self.assertEqual(len(reported), len(MANY_EXPECTED), stderr)
        # In the order of the file.
        for got, (_, line, col, fragment) in zip(reported, MANY_EXPECTED):
            self.assertTrue(got.startswith(f"{path}:{line}:{col}: "), got)

    def test_missing_config_file(self):
        path = os.path.join(self.dir.name, "absent.yaml")
        code, stderr = run_check(path)
        self.assertNotEqual(code, 0)
        self.assertIn(f"{path}: cannot read the config", stderr)

    def test_config_that_is_a_pipe(self):
        # Opening a FIFO for reading waits for a writer: a config path that
        # names one is refused at once, by the check and at start-up.
        path = os.path.join(self.dir.name, "fifo.yaml")
        os.mkfifo(path)
        for args in (["-t", "-c", path], ["-c", path]):
            proc = subprocess.run([HUBGATE, *args], stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, timeout=10)
            stderr = proc.stderr.decode("utf-8", "replace")
            self.assertNotEqual(proc.returncode, 0, args)
            self.assertIn(f"{path}: cannot read the config: not a regular "
                          "file", stderr)

    def test_example_passes(self):
        example = os.path.join(SOURCE_DIR, "examples", "hubgate.yaml")
        code, stderr = run_check(example)
        self.assertEqual(code, 0, stderr)
        self.assertNotIn("Sanitizer", stderr)

    def test_minimal_passes(self):
        path = self.write("ok.yaml", LISTENERS + ROUTES)
        code, stderr = run_check(path)
        self.assertEqual(code, 0, stderr)


if __name__ == "__main__":
    unittest.main(argv=sys.argv[:1], verbosity=2)
