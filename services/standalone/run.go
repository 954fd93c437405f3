package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/highgopress/highgopress/platform/bootstrap"
	"github.com/highgopress/highgopress/platform/config"
	"github.com/highgopress/highgopress/platform/events"
	"github.com/highgopress/highgopress/platform/server"
	"github.com/highgopress/highgopress/services/analytics"
	"github.com/highgopress/highgopress/services/consumer"
	"github.com/highgopress/highgopress/services/counter"
	"github.com/highgopress/highgopress/services/gateway"
	"github.com/highgopress/highgopress/services/gateway/auth"
)

// DevUser is the subject of the printed dev token.
const DevUser = "dev-user"

// Ready describes the running stack.
type Ready struct {
	GatewayURL string
	DevUser    string
	Token      string
	// MySQLDSN reaches the embedded MySQL holding the durable record.
	MySQLDSN string
}

// run starts the embedded middleware and every service, prints the banner
// (or hands Ready to ready, for tests) and serves until ctx is done.
func run(ctx context.Context, logger *slog.Logger, out io.Writer, ready func(Ready)) error {
	mw, err := startEmbedded(logger, events.DefaultTopic, events.DLQTopic(events.DefaultTopic))
	if err != nil {
		return err
	}
	defer mw.Close()

	identitySecret, err := randomSecret()
	if err != nil {
		return err
	}
	jwtSecret, err := randomSecret()
	if err != nil {
		return err
	}
	defaults := map[string]string{
		"HGP_REDIS_ADDR":       mw.RedisAddr,
		"HGP_KAFKA_BROKERS":    mw.KafkaBrokers,
		"HGP_MYSQL_DSN":        mw.MySQLDSN,
		"HGP_CONSUMER_ADDR":    "127.0.0.1:0",
		"HGP_IDENTITY_SECRET":  identitySecret,
		"HGP_JWT_HS256_SECRET": jwtSecret,
		"HGP_GATEWAY_ADDR":     gateway.DefaultAddr,
	}
	cfg := config.WithDefaults(defaults)

	// Until the components run, a failure releases what was built so far,
	// in reverse order; from bootstrap.Run on, Run stops and closes them.
	var built bootstrap.Closers
	fail := func(err error) error {
		_ = built.Close()
		return err
	}

	// The counter listens on a free loopback port the gateway is told about.
	counterLn, err := server.Listen(cfg.String("HGP_COUNTER_ADDR", "127.0.0.1:0"))
	if err != nil {
		return err
	}
	built.Add(counterLn.Close)
	defaults["HGP_GATEWAY_COUNTER_URLS"] = "http://" + counterLn.Addr().String()

	counterComp, err := counter.Build(ctx, logger.With("component", "counter"), cfg)
	if err != nil {
		return fail(fmt.Errorf("counter: %w", err))
	}
	counterComp.Listener = counterLn
	built.Add(counterComp.Close)

	consumerComp, err := consumer.Build(ctx, logger.With("component", "consumer"), cfg)
	if err != nil {
		return fail(fmt.Errorf("consumer: %w", err))
	}
	built.Add(consumerComp.Close)

	analyticsLn, err := server.Listen(cfg.String("HGP_ANALYTICS_ADDR", "127.0.0.1:0"))
	if err != nil {
		return fail(err)
	}
	built.Add(analyticsLn.Close)
	defaults["HGP_GATEWAY_ANALYTICS_URLS"] = "http://" + analyticsLn.Addr().String()
	analyticsComp, err := analytics.Build(ctx, logger.With("component", "analytics"), cfg)
	if err != nil {
		return fail(fmt.Errorf("analytics: %w", err))
	}
	analyticsComp.Listener = analyticsLn
	built.Add(analyticsComp.Close)

	gatewayComp, err := gateway.Build(ctx, logger.With("component", "gateway"), cfg)
	if err == nil {
		err = cfg.Err()
	}
	if err != nil {
		if gatewayComp != nil {
			built.Add(gatewayComp.Close)
		}
		return fail(fmt.Errorf("gateway: %w", err))
	}
	built.Add(gatewayComp.Close)
	gatewayLn, err := server.Listen(gatewayComp.Addr)
	if err != nil {
		return fail(err)
	}
	built.Add(gatewayLn.Close)
	gatewayComp.Listener = gatewayLn

	secret := cfg.String("HGP_JWT_HS256_SECRET", jwtSecret)
	token, err := auth.Issue([]byte(secret), DevUser, 24*time.Hour,
		cfg.String("HGP_JWT_ISSUER", gateway.DefaultIssuer), cfg.String("HGP_JWT_AUDIENCE", gateway.DefaultAudience))
	if err != nil {
		return fail(fmt.Errorf("issue dev token: %w", err))
	}
	r := Ready{GatewayURL: "http://" + gatewayLn.Addr().String(), DevUser: DevUser, Token: token, MySQLDSN: mw.MySQLDSN}
	if out != nil {
		banner(out, r)
	}
	if ready != nil {
		ready(r)
	}
	return bootstrap.Run(ctx, logger, counterComp, consumerComp, analyticsComp, gatewayComp)
}

func randomSecret() (string, error) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("generate secret: %w", err)
	}
	return hex.EncodeToString(b), nil
}
