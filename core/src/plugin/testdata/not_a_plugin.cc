// A shared library that loads fine but exports no plugin descriptor.
extern "C" __attribute__((visibility("default"))) int fixture_not_a_plugin() { return 42; }
