-- New judgments (the registered frame new_judgments), then the counts of every (checkpoint, evaluation,
-- judge version) they touch recounted from the table, so judged_counts never drifts from judgments.
insert or replace into judgments (checkpoint_fp, prompt_id, gen_key, judge, judge_version, label, explanation)
select checkpoint_fp, prompt_id, gen_key, judge, judge_version, label, explanation from new_judgments;

create or replace temp table touched as
select distinct checkpoint_fp, gen_key, judge, judge_version from new_judgments;

delete from judged_counts c using touched t
where c.checkpoint_fp = t.checkpoint_fp and c.gen_key = t.gen_key and c.judge = t.judge
  and c.judge_version = t.judge_version;

insert into judged_counts
select j.checkpoint_fp, j.gen_key, j.judge, j.judge_version, p.split, p.suite, p.category, p.kind, j.label,
       count(*) as n
from judgments j
semi join touched t using (checkpoint_fp, gen_key, judge, judge_version)
join prompts p on p.id = j.prompt_id
group by all;

drop table touched;
