// Every screen module, imported for its register() call. Add new screens here.
import "./home.js";
import "./filing-start.js";
import "./filing-procedure.js";
import "./filing-question.js";
import "./filing-papers.js";
import "./filing-review.js";
import "./filing-sign.js";
import "./filing-result.js";
import "./filing-rating.js";
import "./filing-unconfirmed.js";
import "./tracking.js";
import "./support.js";
import "./info.js";
import "./feedback.js";
import "./home-visit.js";
