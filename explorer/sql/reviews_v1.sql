-- Review store, schema v1: written by the dashboard (human labels, decision records).
create sequence if not exists human_label_seq;
create table if not exists human_labels (
    id            bigint primary key default nextval('human_label_seq'),
    checkpoint_id varchar not null,
    prompt_id     varchar not null,
    label         varchar not null,
    reviewer      varchar not null,
    note          varchar,
    created_at    timestamp default current_timestamp
);
create sequence if not exists decision_seq;
create table if not exists decisions (
    id            bigint primary key default nextval('decision_seq'),
    created_at    timestamp not null,
    author        varchar not null,
    checkpoint_id varchar not null,
    lambda_safe   double not null,
    lambda_helpful double not null,
    judge         varchar not null,
    rationale     varchar not null,
    payload       json not null,          -- frozen metrics, per-category table, sample flips
    content_hash  varchar not null        -- sha256 over the canonical record; verified on read
);
