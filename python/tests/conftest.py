# pytester runs small test files in their own pytest session, to show what the
# plugin does to a failing test's report. The cgi_testbed plugin itself comes from
# the installed package's pytest11 entry point, as it does for its users.
pytest_plugins = ["pytester"]
