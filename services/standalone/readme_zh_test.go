package main

import (
	"os"
	"regexp"
	"slices"
	"testing"
)

// shellBlocks returns the ```sh blocks of a Markdown file, in order.
func shellBlocks(t *testing.T, path string) []string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, m := range regexp.MustCompile("(?ms)^```sh\n(.*?)^```").FindAllStringSubmatch(string(b), -1) {
		out = append(out, m[1])
	}
	return out
}

// TestChineseREADMECommandsMatch keeps README.zh-CN.md in step with
// README.md: both show the same command blocks, in the same order.
func TestChineseREADMECommandsMatch(t *testing.T) {
	en := shellBlocks(t, "../../README.md")
	zh := shellBlocks(t, "../../README.zh-CN.md")
	if len(en) < 5 {
		t.Fatalf("README.md has only %d sh blocks: the scan is broken", len(en))
	}
	if slices.Equal(en, zh) {
		return
	}
	for i := range max(len(en), len(zh)) {
		var a, b string
		if i < len(en) {
			a = en[i]
		}
		if i < len(zh) {
			b = zh[i]
		}
		if a != b {
			t.Fatalf("command block %d differs (README.md has %d blocks, README.zh-CN.md %d):\n--- README.md\n%s--- README.zh-CN.md\n%s",
				i+1, len(en), len(zh), a, b)
		}
	}
}
