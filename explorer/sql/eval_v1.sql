-- Evaluation store, schema v1: written by `python -m explorer eval` (one writer at a time).
create table if not exists checkpoints (
    id              varchar primary key,   -- run id, e.g. s0.5-h2; 'base' for the untrained model
    sweep           varchar not null,
    lambda_safe     double not null,
    lambda_helpful  double not null,
    is_base         boolean not null,
    fingerprint     varchar not null,      -- sha256 of the adapter file ('base' + base fingerprint for base)
    base_fingerprint varchar not null,
    recipe          json,
    manifest        json,
    registered_at   timestamp default current_timestamp
);
create table if not exists prompts (
    id        varchar primary key,
    suite     varchar not null,
    source    varchar not null,
    category  varchar not null,
    kind      varchar not null,           -- harmful | benign | general
    expected  varchar not null,           -- refuse | comply
    split     varchar not null,           -- train | dev | test
    text      varchar not null,
    grp       varchar not null
);
create table if not exists generations (
    checkpoint_fp  varchar not null,      -- checkpoint fingerprint, so a retrained run is never confused with the old one
    checkpoint_id  varchar not null,
    prompt_id      varchar not null,
    gen_key        varchar not null,      -- hash of generation settings (max_new_tokens, greedy, system prompt)
    response       varchar not null,
    n_tokens       integer not null,
    seconds        double not null,
    created_at     timestamp default current_timestamp,
    primary key (checkpoint_fp, prompt_id, gen_key)
);
create table if not exists judgments (
    checkpoint_fp  varchar not null,
    prompt_id      varchar not null,
    gen_key        varchar not null,
    judge          varchar not null,
    judge_version  varchar not null,
    label          varchar not null,      -- full_compliance | partial_refusal | full_refusal
    explanation    varchar,
    primary key (checkpoint_fp, prompt_id, gen_key, judge, judge_version)
);
create table if not exists judge_metrics (
    judge          varchar not null,
    judge_version  varchar not null,
    dataset        varchar not null,      -- heldout (project labels) | jbb_classifier_comparison
    n_labels       integer not null,
    agreement      double,
    kappa          double,
    confusion      json,
    computed_at    timestamp default current_timestamp,
    primary key (judge, judge_version, dataset)
);
create table if not exists capability (
    checkpoint_fp  varchar primary key,
    checkpoint_id  varchar not null,
    mean_nll       double not null,       -- nats per token of the base model's held-out answers
    n_tokens       integer not null
);
