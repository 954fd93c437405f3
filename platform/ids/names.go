package ids

// MaxNamespaceLen is the longest namespace, in bytes.
const MaxNamespaceLen = 32

// NamespaceAlphabet describes the characters of a namespace, for error
// messages.
const NamespaceAlphabet = "[a-z0-9_-]"

// IsNamespaceChar reports whether c may appear in a namespace.
func IsNamespaceChar(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_' || c == '-'
}

// CheckNamespace returns nil when s is a valid namespace (1-MaxNamespaceLen
// characters of NamespaceAlphabet), the rule every service applies to the
// namespace of an item.
func CheckNamespace(s string) error {
	return Check(s, 1, MaxNamespaceLen, IsNamespaceChar, NamespaceAlphabet)
}
