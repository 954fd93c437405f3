module github.com/highgopress/highgopress/web

go 1.26.7

// The npm tree is not Go code.
ignore ./node_modules
