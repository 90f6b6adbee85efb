-- Made once with headway at commit ca6aaba: a state.db as that code writes it.
BEGIN TRANSACTION;
CREATE TABLE events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    service TEXT NOT NULL,
    at REAL NOT NULL,
    body TEXT NOT NULL             -- states.Event as JSON
);
INSERT INTO "events" VALUES(1,'shop',1.79660903934069776533e+09,'{"at":1796609039.3406978,"kind":"state","state":"RUNNING","message":"up","details":{}}');
INSERT INTO "events" VALUES(2,'shop',1000000000.0,'{"at":1000000000.0,"kind":"head_failed","state":"HEAD_RECOVERING","message":"head lost","details":{}}');
INSERT INTO "events" VALUES(3,'shop',1.79660903934071350092e+09,'{"at":1796609039.3407135,"kind":"state","state":"RUNNING","message":"new head","details":{}}');
CREATE TABLE secrets (
    service TEXT NOT NULL,         -- environment values a deploy handed over (store passwords):
    name TEXT NOT NULL,            -- repairs need them after the CLI that had them is gone
    value TEXT NOT NULL,
    PRIMARY KEY (service, name)
);
INSERT INTO "secrets" VALUES('shop','STORE_PASSWORD','s3cret-fixture');
CREATE TABLE services (
    name TEXT PRIMARY KEY,
    record TEXT NOT NULL,          -- ServiceRecord as JSON, without its events
    updated_at REAL NOT NULL
);
INSERT INTO "services" VALUES('shop','{"name":"shop","cluster_id":"c-shop-1","mode":"loopback","state":"RUNNING","reason":"","gcs_ft":true,"storage_source":null,"storage_masked":null,"namespace":null,"store_user":null,"node_uid":null,"spec":{"name":"shop","applications":[{"name":"default","import_path":"app:deployment","route_prefix":"/","args":{},"runtime_env":{},"deployments":[],"logging_config":null}],"compute_config":{"cloud":null,"head_node":{"instance_type":null,"resources":{}},"worker_nodes":[{"name":"cpu","instance_type":null,"resources":{"CPU":1.0},"count":2,"min_nodes":null,"max_nodes":null}],"idle_timeout_s":60.0},"ray_gcs_external_storage_config":{"enable":true,"address":"redis://127.0.0.1:6390","redis_certificate_path":null,"redis_username":null,"redis_password_env":null,"redis_password_file":null,"redis_client_certificate_path":null,"redis_client_key_path":null,"require_replica":false},"env_vars":{},"working_dir":null,"requirements":[],"excludes":[],"allow_source_builds":false,"query_auth_token_enabled":true,"http_options":{"host":null,"port":null,"request_timeout_s":null,"keep_alive_timeout_s":null,"retry_5xx_idempotent":true},"version_name":null,"rollout_strategy":null,"canary_percent":null,"max_surge_percent":100,"rollout":{"steps_percent":[10,25,50,100],"step_interval_s":30.0,"max_error_rate":0.01,"max_p99_ratio":2.0,"p99_slack_ms":50.0,"min_requests":20},"cloud":null,"project":null,"proxy_location":null,"grpc_options":{},"logging_config":null},"head_ip":"127.0.0.1","gcs_port":6500,"dashboard_port":8300,"serve_port":8400,"working_dir_uri":null,"apps_digest":null,"desired_version":2,"running_version":2,"nodes":[{"name":"head","role":"head","group":null,"ip":"127.0.0.1","netns":null,"host":null,"ports":{},"temp_dir":"/tmp/hwx/head","log":"/tmp/hwx/head.log","marker":"m1","pid":null,"pid_started":null,"started_at":0.0,"node_id":null,"config":null,"fenced":false,"store":null},{"name":"worker-1","role":"worker","group":"cpu","ip":"127.0.0.1","netns":null,"host":null,"ports":{},"temp_dir":"/tmp/hwx/w1","log":"/tmp/hwx/w1.log","marker":"m2","pid":null,"pid_started":null,"started_at":0.0,"node_id":null,"config":null,"fenced":false,"store":null}],"retired":[],"autoscaled":{},"waiting":[],"ingress":null,"parent":null,"rollout":null,"created_at":1796609039.3406749,"updated_at":1796609039.3407185}',1.79660903934071850777e+09);
CREATE TABLE tokens (
    scope TEXT PRIMARY KEY,        -- 'api', 'metrics', 'service:<name>' (endpoint), 'ray:<name>' (Ray's)
    token TEXT NOT NULL
);
INSERT INTO "tokens" VALUES('api','api-token-fixture');
INSERT INTO "tokens" VALUES('service:shop','shop-token-fixture');
CREATE TABLE versions (
    service TEXT NOT NULL,
    number INTEGER NOT NULL,       -- 1, 2, ... per service
    name TEXT,                     -- the spec's version_name, if any
    spec TEXT NOT NULL,            -- the validated spec (JSON)
    package_uri TEXT,              -- the working_dir package it runs (kept for rollback)
    digest TEXT NOT NULL,          -- of spec and package: tells two deploys apart
    origin TEXT NOT NULL,          -- deploy | scale | rollback to N
    created_at REAL NOT NULL,
    outcome TEXT NOT NULL,         -- pending | ran (reached RUNNING) | failed | interrupted
    note TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (service, number)
);
INSERT INTO "versions" VALUES('shop',1,NULL,'{"name": "shop", "applications": [{"name": "default", "import_path": "app:deployment", "route_prefix": "/", "args": {}, "runtime_env": {}, "deployments": [], "logging_config": null}], "compute_config": {"cloud": null, "head_node": {"instance_type": null, "resources": {}}, "worker_nodes": [{"name": "cpu", "instance_type": null, "resources": {"CPU": 1.0}, "count": 2, "min_nodes": null, "max_nodes": null}], "idle_timeout_s": 60.0}, "ray_gcs_external_storage_config": {"enable": true, "address": "redis://127.0.0.1:6390", "redis_certificate_path": null, "redis_username": null, "redis_password_env": null, "redis_password_file": null, "redis_client_certificate_path": null, "redis_client_key_path": null, "require_replica": false}, "env_vars": {}, "working_dir": null, "requirements": [], "excludes": [], "allow_source_builds": false, "query_auth_token_enabled": true, "http_options": {"host": null, "port": null, "request_timeout_s": null, "keep_alive_timeout_s": null, "retry_5xx_idempotent": true}, "version_name": null, "rollout_strategy": null, "canary_percent": null, "max_surge_percent": 100, "rollout": {"steps_percent": [10, 25, 50, 100], "step_interval_s": 30.0, "max_error_rate": 0.01, "max_p99_ratio": 2.0, "p99_slack_ms": 50.0, "min_requests": 20}, "cloud": null, "project": null, "proxy_location": null, "grpc_options": {}, "logging_config": null}','file:///tmp/pkg.zip','00512eff02be8c2f','deploy',1.79660903935939335828e+09,'ran','');
INSERT INTO "versions" VALUES('shop',2,NULL,'{"name": "shop", "applications": [{"name": "default", "import_path": "app:deployment", "route_prefix": "/", "args": {}, "runtime_env": {}, "deployments": [], "logging_config": null}], "compute_config": {"cloud": null, "head_node": {"instance_type": null, "resources": {}}, "worker_nodes": [{"name": "cpu", "instance_type": null, "resources": {"CPU": 1.0}, "count": 2, "min_nodes": null, "max_nodes": null}], "idle_timeout_s": 60.0}, "ray_gcs_external_storage_config": {"enable": true, "address": "redis://127.0.0.1:6390", "redis_certificate_path": null, "redis_username": null, "redis_password_env": null, "redis_password_file": null, "redis_client_certificate_path": null, "redis_client_key_path": null, "require_replica": false}, "env_vars": {}, "working_dir": null, "requirements": [], "excludes": [], "allow_source_builds": false, "query_auth_token_enabled": true, "http_options": {"host": null, "port": null, "request_timeout_s": null, "keep_alive_timeout_s": null, "retry_5xx_idempotent": true}, "version_name": null, "rollout_strategy": null, "canary_percent": null, "max_surge_percent": 100, "rollout": {"steps_percent": [10, 25, 50, 100], "step_interval_s": 30.0, "max_error_rate": 0.01, "max_p99_ratio": 2.0, "p99_slack_ms": 50.0, "min_requests": 20}, "cloud": null, "project": null, "proxy_location": null, "grpc_options": {}, "logging_config": null}','file:///tmp/pkg.zip','00512eff02be8c2f','deploy',1.7966090393636465072e+09,'ran','');
CREATE INDEX events_by_service ON events (service, id);
DELETE FROM "sqlite_sequence";
INSERT INTO "sqlite_sequence" VALUES('events',3);
COMMIT;
