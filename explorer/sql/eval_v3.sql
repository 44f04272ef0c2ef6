-- Evaluation store, schema v3: judgment counts kept up to date by every write (insert_judgments.sql),
-- so the dashboard's first read after a commit aggregates a few hundred rows instead of joining every
-- judgment with its prompt (1M judgments: bench/NOTES.md, "Dashboard at scale").
create table if not exists judged_counts (
    checkpoint_fp  varchar not null,
    gen_key        varchar not null,
    judge          varchar not null,
    judge_version  varchar not null,
    split          varchar not null,      -- the prompt's split, suite, category and kind
    suite          varchar not null,
    category       varchar not null,
    kind           varchar not null,
    label          varchar not null,
    n              integer not null,
    primary key (checkpoint_fp, gen_key, judge, judge_version, split, suite, category, kind, label)
);
insert or replace into judged_counts
select j.checkpoint_fp, j.gen_key, j.judge, j.judge_version, p.split, p.suite, p.category, p.kind, j.label,
       count(*) as n
from judgments j
join prompts p on p.id = j.prompt_id
group by all;
