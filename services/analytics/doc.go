// Package analytics is the analytics service: hot rankings of liked items
// over time windows and statistics of the gateway's API calls, kept in
// Redis from the user-actions topic by its own consumer group.
package analytics
