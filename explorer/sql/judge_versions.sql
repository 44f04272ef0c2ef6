-- Each judge that has judged anything, at the version readers use (views.sql: judge_version).
select judge, judge_version from judge_version order by judge
