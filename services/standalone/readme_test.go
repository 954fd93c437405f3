package main

import (
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
)

// TestREADMEDocumentsEveryVariable fails when service code reads an HGP_*
// variable that the README's configuration section does not list.
func TestREADMEDocumentsEveryVariable(t *testing.T) {
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	used := map[string]string{}
	re := regexp.MustCompile(`"(HGP_[A-Z0-9_]+)"`)
	for _, root := range []string{"../../platform", "../../services"} {
		err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() || !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
				return err
			}
			if strings.Contains(path, "/testenv/") {
				return nil // test-only variables
			}
			src, err := os.ReadFile(path)
			if err != nil {
				return err
			}
			for _, m := range re.FindAllStringSubmatch(string(src), -1) {
				used[m[1]] = path
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	if len(used) < 20 {
		t.Fatalf("found only %d variables: the scan is broken", len(used))
	}
	var missing []string
	for name, path := range used {
		if !strings.Contains(string(readme), "`"+name+"`") {
			missing = append(missing, name+" (read in "+path+")")
		}
	}
	sort.Strings(missing)
	if len(missing) > 0 {
		t.Fatalf("README.md does not document:\n  %s", strings.Join(missing, "\n  "))
	}
}
