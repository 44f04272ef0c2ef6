-- Definitions shared by the read queries, created on every read connection (store.reader).

-- The version each judge is read at: the one with the most judgments, so a re-judging run in progress
-- does not replace a complete older version; once it has judged as many, the version scored against
-- human labels most recently (judge_metrics) wins the tie, so a finished re-judging takes over.
-- Counted from judged_counts (kept by every write), not from the judgments themselves.
create or replace temp view judge_version as
with counted as (
    select judge, judge_version, sum(n) as n from ev.judged_counts group by judge, judge_version
),
scored as (
    select judge, judge_version, max(computed_at) as scored_at from ev.judge_metrics group by judge, judge_version
),
ranked as (
    select c.judge, c.judge_version,
           row_number() over (partition by c.judge
                              order by c.n desc, s.scored_at desc nulls last, c.judge_version desc) as rank
    from counted c
    left join scored s using (judge, judge_version)
)
select judge, judge_version from ranked where rank = 1;

-- The evaluation read by default: the greedy generation settings with the most judged generations
-- (ties: the most recently registered). Sampled answers (eval --sampled) are read through sampled_keys.
create or replace temp view current_evaluation as
with per_judge as (
    select gen_key, judge, judge_version, sum(n) as n from ev.judged_counts group by all
),
counted as (
    select gen_key, max(n) as n from per_judge group by gen_key
)
select e.gen_key, e.settings, e.sweep, e.judges, e.primary_judge, e.recipe
from ev.evaluations e
join counted using (gen_key)
where coalesce(e.settings->>'greedy', 'true') = 'true'
order by counted.n desc, e.registered_at desc
limit 1;

-- The sampled answers that go with it: one generation key per sample index, same length cap.
create or replace temp view sampled_keys as
select e.gen_key
from ev.evaluations e, current_evaluation c
where e.settings->>'greedy' = 'false' and e.settings->>'max_new_tokens' = c.settings->>'max_new_tokens';

-- Human overrides: the newest reviewer label of each response (the one saved last when two share a
-- timestamp), with who gave it. Every query that lets human labels override the judge reads them here.
create or replace temp view human_override as
select checkpoint_id, prompt_id, label, reviewer, created_at
from rv.human_labels
qualify row_number() over (partition by checkpoint_id, prompt_id order by created_at desc, id desc) = 1;

-- Judged responses: every judgment at the version its judge is read at (judge_version), under its
-- checkpoint's id (a fingerprint that several ids share, e.g. a bisection run that landed on a grid point,
-- is judged once and read under each id). `label` is the judge's.
create or replace temp view judged as
select c.id as checkpoint_id, j.checkpoint_fp, j.prompt_id, j.gen_key, j.judge, j.judge_version, j.label
from ev.judgments j
join judge_version v on v.judge = j.judge and v.judge_version = j.judge_version
join ev.checkpoints c on c.fingerprint = j.checkpoint_fp;

-- The same with the response's human override (human_label, null when none) and the label read:
-- `label` is the human label when use_human is true and there is one, else the judge's (judge_label).
-- Every query that lets human labels override the judge reads them here, passing its $use_human; the
-- others read `judged` (joining the overrides costs ~50 ms on a scan of every judgment).
create or replace temp macro labelled(use_human) as table
select j.checkpoint_id, j.checkpoint_fp, j.prompt_id, j.gen_key, j.judge, j.judge_version,
       j.label as judge_label, h.label as human_label,
       case when use_human and h.label is not null then h.label else j.label end as label
from judged j
left join human_override h on h.checkpoint_id = j.checkpoint_id and h.prompt_id = j.prompt_id;
