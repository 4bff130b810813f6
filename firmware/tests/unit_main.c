#include <stdio.h>
#include <string.h>

#include "unit.h"

#define MAX_TESTS 512

struct unit_test {
    const char *name;
    unit_fn fn;
};
static struct unit_test tests[MAX_TESTS];
static int n_tests;
int unit_failed;

void unit_register(const char *name, unit_fn fn) {
    if (n_tests < MAX_TESTS) tests[n_tests++] = (struct unit_test){name, fn};
}

void unit_fail(const char *file, int line, const char *what) {
    printf("  %s:%d: check failed: %s\n", file, line, what);
    unit_failed = 1;
}

int main(int argc, char **argv) {
    if (argc == 2 && strcmp(argv[1], "--list") == 0) {
        for (int i = 0; i < n_tests; i++) printf("%s\n", tests[i].name);
        return 0;
    }
    int failures = 0, ran = 0;
    for (int i = 0; i < n_tests; i++) {
        int wanted = argc == 1;
        for (int a = 1; a < argc; a++) wanted |= strcmp(argv[a], tests[i].name) == 0;
        if (!wanted) continue;
        unit_failed = 0;
        tests[i].fn();
        ran++;
        failures += unit_failed;
        printf("%s %s\n", unit_failed ? "FAIL" : "PASS", tests[i].name);
    }
    if (ran == 0) {
        printf("no test matched\n");
        return 2;
    }
    return failures ? 1 : 0;
}
